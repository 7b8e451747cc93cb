"""The book's nodule masks (chapter 13, ``Ct.buildAnnotationMask``).

For each annotated nodule, a box is grown from its center voxel along each
axis separately: the radius starts at 2 and grows while the voxels at
``center - r`` *and* ``center + r`` on that axis are both above -700 HU. The
mask is the union of the boxes, intersected with ``HU > -700``.

Fixed here:

- at the scan's low edge ``center - r`` goes negative and numpy wraps around
  to the far end of the axis, so a nodule near slice 0 grows (or stops) on
  voxels from the other side of the scan; the growth now stops at either
  edge as the book's ``IndexError`` branch does at the high edge (the last
  radius whose voxels were inside and bright);
- the column slice's upper bound uses the *row* radius
  (``cc + row_radius + 1``); it uses the column radius;
- a box reaching below index 0 makes an empty (or wrapped) numpy slice;
  boxes are clipped to the scan.

A mask is fully determined by the boxes and the HU values, so the boxes
(six integers per nodule) are what is kept per scan; the mask of any crop
is ``boxes & (crop > -700)``, computed from the crop's own voxels. Clipping
to [-1000, 1000] moves no value across -700, so clipped crops give the same
mask. Nothing of scan size is ever built, stored or re-read per item.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

THRESHOLD_HU = -700.0
START_RADIUS = 2


def _radius(hu: np.ndarray, center: Sequence[int], axis: int, threshold: float) -> int:
    dim, c = hu.shape[axis], int(center[axis])
    lo, hi = list(center), list(center)
    r = START_RADIUS
    while True:
        if c - r < 0 or c + r >= dim:
            return r - 1
        lo[axis], hi[axis] = c - r, c + r
        if not (hu[tuple(lo)] > threshold and hu[tuple(hi)] > threshold):
            return r
        r += 1


def nodule_boxes(hu: np.ndarray, centers_irc, threshold: float = THRESHOLD_HU) -> np.ndarray:
    """(K, 2, 3) int64: per nodule the first and last voxel (inclusive, IRC)
    of its grown box, clipped to the scan. Centers outside the scan get an
    empty box (first > last)."""
    centers = np.asarray(centers_irc, dtype=np.int64).reshape(-1, 3)
    shape = np.array(hu.shape, dtype=np.int64)
    boxes = np.zeros((len(centers), 2, 3), dtype=np.int64)
    for k, center in enumerate(centers):
        if np.any(center < 0) or np.any(center >= shape):
            boxes[k] = [[0, 0, 0], [-1, -1, -1]]
            continue
        radius = np.array([_radius(hu, center, axis, threshold) for axis in range(3)])
        boxes[k, 0] = np.maximum(center - radius, 0)
        boxes[k, 1] = np.minimum(center + radius, shape - 1)
    return boxes


def box_mask(boxes: np.ndarray, start: Sequence[int], shape: Sequence[int]) -> np.ndarray:
    """The union of ``boxes`` inside the window of ``shape`` whose first
    voxel is ``start`` (any window, partly or wholly outside the scan)."""
    out = np.zeros(tuple(int(s) for s in shape), dtype=bool)
    start = np.asarray(start, dtype=np.int64)
    size = np.asarray(out.shape, dtype=np.int64)
    for lo, hi in np.asarray(boxes, dtype=np.int64).reshape(-1, 2, 3):
        a = np.maximum(lo - start, 0)
        b = np.minimum(hi + 1 - start, size)
        if np.all(b > a):
            out[a[0]:b[0], a[1]:b[1], a[2]:b[2]] = True
    return out


def window_mask(boxes: np.ndarray, start: Sequence[int], hu_window: np.ndarray, threshold: float = THRESHOLD_HU):
    """The mask of a window of the scan: ``hu_window`` holds its voxels
    (any shape (d, h, w); voxels outside the scan must be below threshold,
    as air fill is)."""
    return box_mask(boxes, start, hu_window.shape) & (hu_window > threshold)


def annotation_mask(hu: np.ndarray, centers_irc, threshold: float = THRESHOLD_HU) -> np.ndarray:
    """The book's whole-scan mask (bool, the scan's shape)."""
    return window_mask(nodule_boxes(hu, centers_irc, threshold), (0, 0, 0), np.asarray(hu), threshold)


def positive_slices(hu: np.ndarray, boxes: np.ndarray, threshold: float = THRESHOLD_HU) -> np.ndarray:
    """Sorted slice indices where the mask has a voxel (the book's
    ``positive_indexes``), reading only the voxels inside the boxes."""
    found: set[int] = set()
    for lo, hi in np.asarray(boxes, dtype=np.int64).reshape(-1, 2, 3):
        if np.any(hi < lo):
            continue
        region = np.asarray(hu[lo[0]:hi[0] + 1, lo[1]:hi[1] + 1, lo[2]:hi[2] + 1])
        bright = (region > threshold).any(axis=(1, 2))
        found.update(int(lo[0] + i) for i in np.flatnonzero(bright))
    return np.array(sorted(found), dtype=np.int64)
