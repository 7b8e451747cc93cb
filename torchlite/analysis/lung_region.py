"""Where the lungs are: the box of a scan that the U-Net needs to see.

Nodules lie in the lungs, and the lungs of a chest CT span ~60-80% of its
slices and a box of about a third of each slice. :func:`lung_box` finds that
box, grown by a safety margin, so whole-scan analysis runs the U-Net on it
alone (``AnalysisConfig.lung_region``; ``torchlite analyze --whole-scan``
turns it off).

Method, on a copy subsampled to about ``STEP_MM`` per voxel (every 3rd-4th
voxel in-plane of a 512x512 scan, every 1st-2nd slice), with numpy and
``scipy.ndimage`` (~0.1-0.3 s on a 300x512x512 scan, most of it reading the
strided voxels):

1. air: voxels below ``AIR_HU`` (-400 HU: aerated lung is -950..-600,
   soft tissue above -200);
2. outside air: the 2D components of each slice's air that touch the
   slice's border (the air around the body, the scanner's padding outside
   its reconstruction circle) are dropped. Per slice, not in 3D, so lungs
   that reach the outside air through the airways on some slice (a scan
   that takes in the mouth or nose, a tracheostomy) are kept;
3. what is left is air inside the body: lungs and airways, and also gas in
   the stomach or bowel, sinuses. Its 3D components (26-connected) of at
   least ``MIN_RELATIVE_SIZE`` of the largest one are kept, so specks of
   gas do not stretch the box, while a much smaller second lung does not
   get dropped;
4. the box of what is kept, widened by the subsampling step and by
   ``margin_mm`` (10 mm) on every side, clamped to the scan.

The margin keeps nodules away from the box's edges, where the U-Net (which
pads its convolutions) sees less context than on the whole slice; the
context slices themselves are still read from the whole scan.

Fallback: the whole scan (``LungBox.found`` False, and a log line) when
nothing plausible is found, so this lever never costs a nodule in a scan it
does not understand: no air inside the body (a phantom in air, a uniform
volume, a scan of lung only: all its air touches the border), a largest
component under ``MIN_LUNG_ML`` (not a lung), or a border-touching air
component that is lung-like rather than air-like (mean above
``OUTSIDE_AIR_MAX_HU``: a field of view that cuts through the lungs, whose
cut parts the border test would drop).

Limits: the box is of *aerated* lung. Lung parenchyma that holds no air
(collapse, consolidation, a pleural effusion, a mass filling a lobe) lies
outside it unless within the margin or between aerated parts; a lung
reduced to under ``MIN_RELATIVE_SIZE`` of the other is dropped. Gas in the
stomach or bowel that is large enough is kept and only makes the box
bigger. Emphysematous lungs that touch the border of a cropped scan (mean
below -950 HU) look like outside air there and are not detected as cut. A
scan whose padding outside the reconstruction circle is tissue-like (0 HU)
encloses its outside air: the box is then the circle's, no gain but no
loss. One box for all slices: its in-plane window is the union of every
slice's lungs.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

log = logging.getLogger(__name__)

AIR_HU = -400  # below: air or aerated lung
OUTSIDE_AIR_MAX_HU = -950  # a border-touching air component whose mean HU is above this is lung, cut by the FOV
MIN_LUNG_ML = 20.0  # the largest inside-air component must hold this (adult lungs: litres; small synthetic: 140+ mL)
MIN_RELATIVE_SIZE = 0.02  # inside-air components smaller than this share of the largest are dropped
MIN_CUT_SHARE = 0.01  # a lung-like border component counts from this share of a slice's mean kept area ...
MIN_CUT_VOXELS = 4  # ... and this many (subsampled) voxels
STEP_MM = 2.5  # subsampling target (voxel side, mm) of the working copy
MIN_SIDE = 48  # ... but never fewer voxels than this in-plane
MARGIN_MM = 10.0

_IN_PLANE = np.zeros((3, 3, 3), dtype=bool)
_IN_PLANE[1] = ndimage.generate_binary_structure(2, 1)  # 4-connected within a slice, never across
_FULL = np.ones((3, 3, 3), dtype=bool)


@dataclass(frozen=True)
class LungBox:
    """Half-open voxel box (I, R, C) of the scan holding the lungs, margin included."""

    z0: int
    z1: int
    y0: int
    y1: int
    x0: int
    x1: int
    shape: tuple[int, int, int]  # the scan's (D, H, W)
    found: bool  # False: nothing plausible was found and the box is the whole scan
    reason: str = ""  # why the whole scan, when not found

    @classmethod
    def whole(cls, shape, reason: str) -> "LungBox":
        d, h, w = (int(n) for n in shape)
        return cls(0, d, 0, h, 0, w, (d, h, w), False, reason)

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        return slice(self.z0, self.z1), slice(self.y0, self.y1), slice(self.x0, self.x1)

    @property
    def box_shape(self) -> tuple[int, int, int]:
        return self.z1 - self.z0, self.y1 - self.y0, self.x1 - self.x0

    @property
    def is_whole(self) -> bool:
        return self.box_shape == self.shape

    @property
    def fraction(self) -> float:
        """Voxels in the box / voxels in the scan."""
        return math.prod(self.box_shape) / math.prod(self.shape)

    def contains(self, irc) -> np.ndarray:
        """Whether each (N, 3) (or one (3,)) IRC point lies in the box."""
        p = np.asarray(irc, dtype=np.float64)
        lo = np.array([self.z0, self.y0, self.x0], dtype=np.float64)
        hi = np.array([self.z1, self.y1, self.x1], dtype=np.float64) - 1
        return np.all((p >= lo) & (p <= hi), axis=-1)

    def to_json(self) -> dict:
        return {"box_irc": [self.z0, self.z1, self.y0, self.y1, self.x0, self.x1], "found": self.found,
                "fraction": round(self.fraction, 4), **({"reason": self.reason} if self.reason else {})}


def _check_volume(volume) -> np.ndarray:
    if isinstance(volume, torch.Tensor):
        if volume.device.type != "cpu":
            volume = volume.cpu()
        if volume.dtype in (torch.bool, torch.uint8) or volume.is_complex():
            raise ValueError(f"lung_box: `volume` must hold HU (int16, or another signed/float dtype), "
                             f"got dtype {volume.dtype}")
        array = volume.numpy()
    elif isinstance(volume, np.ndarray):
        array = volume
    else:
        raise TypeError(f"lung_box: `volume` must be a torch.Tensor or numpy array, got {type(volume).__name__}")
    if array.dtype.kind not in "if":
        raise ValueError(f"lung_box: `volume` must hold HU (int16, or another signed/float dtype), "
                         f"got dtype {array.dtype}")
    if array.ndim != 3 or min(array.shape) == 0:
        raise ValueError(f"lung_box: `volume` must be a non-empty (D, H, W) scan, got shape {tuple(array.shape)}")
    return array


def _check_spacing(spacing_irc) -> np.ndarray:
    try:
        spacing = np.asarray(spacing_irc, dtype=np.float64)
    except (TypeError, ValueError):
        spacing = np.array([])
    if spacing.shape != (3,) or not np.all(np.isfinite(spacing)) or not np.all(spacing > 0):
        raise ValueError(f"lung_box: `spacing_irc` must be 3 positive millimetre sizes (I, R, C), got {spacing_irc!r}")
    return spacing


def lung_box(volume: torch.Tensor | np.ndarray, spacing_irc, *, margin_mm: float = MARGIN_MM) -> LungBox:
    """The box of (D, H, W) HU ``volume`` holding its lungs, ``margin_mm`` wider on every side,
    clamped to the scan; the whole scan (``found`` False) when no lungs are found.
    ``spacing_irc``: voxel size in mm, (I, R, C) order (``Geometry.spacing[::-1]``)."""
    array = _check_volume(volume)
    spacing = _check_spacing(spacing_irc)
    if not (isinstance(margin_mm, (int, float)) and math.isfinite(margin_mm) and margin_mm >= 0):
        raise ValueError(f"lung_box: `margin_mm` must be a finite number >= 0, got {margin_mm!r}")
    shape = tuple(int(n) for n in array.shape)

    # every step-th voxel: about STEP_MM apart, and at least MIN_SIDE of them across a slice
    steps = [max(1, int(STEP_MM // spacing[0]))] + [max(1, min(int(STEP_MM // s), n // MIN_SIDE))
                                                    for s, n in zip(spacing[1:], shape[1:])]
    sub = array[::steps[0], ::steps[1], ::steps[2]]
    air = sub < AIR_HU

    def whole(reason: str) -> LungBox:
        log.info("lung region: using the whole scan %s: %s", shape, reason)
        return LungBox.whole(shape, reason)

    if not air.any():
        return whole("no air in the scan")
    # 1. outside air: per slice, the air components that touch the slice's border
    labels2d, n2d = ndimage.label(air, structure=_IN_PLANE)
    border = np.unique(np.concatenate([labels2d[:, 0, :].ravel(), labels2d[:, -1, :].ravel(),
                                       labels2d[:, :, 0].ravel(), labels2d[:, :, -1].ravel()]))
    border = border[border > 0]
    outside = np.zeros(n2d + 1, dtype=bool)
    outside[border] = True
    inside = air & ~outside[labels2d]
    if not inside.any():
        return whole("no air inside the body")
    # 2. air inside the body, as 3D components; keep the lung-sized ones
    labels3d, n3d = ndimage.label(inside, structure=_FULL)
    sizes = np.bincount(labels3d.ravel(), minlength=n3d + 1)
    sizes[0] = 0
    voxel_ml = float(np.prod(spacing * np.array(steps))) / 1000.0
    largest = int(sizes.max())
    if largest * voxel_ml < MIN_LUNG_ML:
        return whole(f"no lung-sized air inside the body (largest component {largest * voxel_ml:.1f} mL)")
    keep = sizes >= MIN_RELATIVE_SIZE * largest
    keep[0] = False
    kept_voxels = int(sizes[keep].sum())
    # 3. lungs cut by the field of view: a sizeable border component that is lung-like, not air
    flat = labels2d.ravel()
    counts2d = np.bincount(flat, minlength=n2d + 1)
    big = border[counts2d[border] >= max(MIN_CUT_SHARE * kept_voxels / sub.shape[0], MIN_CUT_VOXELS)]
    if len(big):
        hu = np.clip(sub, -1024, None).ravel()  # padding outside the reconstruction circle counts as air
        means = np.bincount(flat, weights=hu, minlength=n2d + 1)[big] / counts2d[big]
        if np.any(means > OUTSIDE_AIR_MAX_HU):
            return whole(f"lung-like air (mean {float(means.max()):.0f} HU) touches the field of view's border:"
                         " the lungs may be cut")
    kept = keep[labels3d]
    lo, hi = [], []
    for axis, (step, size, mm) in enumerate(zip(steps, shape, spacing)):
        others = tuple(a for a in range(3) if a != axis)
        where = np.flatnonzero(kept.any(axis=others))
        grow = math.ceil(margin_mm / mm) + step - 1  # lungs may reach step - 1 voxels past the outermost sample
        lo.append(max(0, int(where[0]) * step - grow))
        hi.append(min(size, int(where[-1]) * step + 1 + grow))
    return LungBox(lo[0], hi[0], lo[1], hi[1], lo[2], hi[2], shape, True)
