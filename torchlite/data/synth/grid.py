"""Where a synthetic scan lies in patient space, and how its voxels are addressed.

The phantom is described in patient millimetres (LPS, as ITK and LUNA16:
+X toward the patient's left, +Y posterior, +Z toward the head) relative to
the centre of the field of view. A scan's direction matrix may flip axes, so
the same anatomy lands in the array upside down or mirrored, as real scanners
write it; the world coordinates in the CSVs come from the header's own
geometry (``torchlite.data.geometry``), never from the array layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from torchlite.data.geometry import Geometry

UID_ROOT = "1.3.6.1.4.1.14519.5.2.1.6279.6001."  # LUNA16's LIDC series UID prefix
UID_DIGITS = 30  # e.g. ...6001.100225287222365663678666836860

# Direction matrices (row-major 3x3). Most LUNA16 headers carry the identity;
# the flips are what other scanners write and what a reader must honour.
DIRECTIONS = {
    "identity": (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0),
    "flip_z": (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0),
    "flip_xy": (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0),
}
DIRECTION_PROBS = {"identity": 0.7, "flip_z": 0.15, "flip_xy": 0.15}

# Slice thickness (mm) and its share; the common reconstructions of LIDC-era
# chest CT (an assumption: the shared files hold no spacing).
SLICE_SPACINGS = {1.0: 0.25, 1.25: 0.25, 1.5: 0.10, 2.0: 0.15, 2.5: 0.25}


def series_uid(rng: np.random.Generator) -> str:
    digits = rng.integers(0, 10, size=UID_DIGITS)
    digits[0] = rng.integers(1, 10)  # no leading zero: DICOM UID components never start with 0
    return UID_ROOT + "".join(map(str, digits.tolist()))


@dataclass(frozen=True)
class ScanSpec:
    """Header of one synthetic scan: uid, array shape (I, R, C), XYZ geometry."""

    uid: str
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]  # 9 values, row-major
    direction_kind: str

    @property
    def geometry(self) -> Geometry:
        return Geometry(self.origin, self.spacing, self.direction, self.shape)


def draw_spec(rng: np.random.Generator, uid: str, size: str, direction_kind: str) -> ScanSpec:
    """Shape, spacing and origin for a `small` or `full` scan."""
    dz = float(rng.choice(list(SLICE_SPACINGS), p=list(SLICE_SPACINGS.values())))
    if size == "small":
        side = int(rng.choice([160, 176, 192]))
        sxy = round(float(rng.uniform(0.6, 0.9)), 4)
        # z extent about the width of the (zoomed) field of view, as in a chest scan
        depth = int(np.clip(round(rng.uniform(1.0, 1.3) * side * sxy / dz), 48, 128))
    elif size == "full":
        side = 512
        sxy = round(float(rng.uniform(0.6, 0.9)) * 512) / 512  # field of view in whole mm
        depth = int(round(rng.uniform(280.0, 360.0) / dz))
    else:
        raise ValueError(f"`size` must be 'small' or 'full', got {size!r}")
    shape = (depth, side, side)
    spacing = np.array([sxy, sxy, dz])
    direction = np.array(DIRECTIONS[direction_kind]).reshape(3, 3)
    # Table positions vary: most centres lie a little below the scanner's
    # isocentre, a few far from it (LUNA16 coordZ spans -790 .. +1790 mm).
    zc = rng.uniform(-350.0, -50.0) if rng.random() < 0.85 else rng.uniform(-50.0, 1700.0)
    center = np.array([rng.uniform(-25.0, 25.0), rng.uniform(-40.0, 10.0), zc])
    center_cri = (np.array(shape[::-1], dtype=np.float64) - 1.0) / 2.0
    origin = np.round(center - direction @ (center_cri * spacing), 3)
    return ScanSpec(
        uid=uid,
        shape=shape,
        spacing=tuple(float(s) for s in spacing),
        origin=tuple(float(o) for o in origin),
        direction=tuple(float(d) for d in direction.ravel()),
        direction_kind=direction_kind,
    )


class Grid:
    """Voxel addressing in patient millimetres relative to the field-of-view centre.

    ``coords(box)`` gives X, Y, Z arrays that broadcast to the box's shape, so
    per-voxel anatomy is plain numpy broadcasting whatever the direction
    matrix (any signed permutation of the axes).
    """

    def __init__(self, spec: ScanSpec):
        self.spec = spec
        self.geometry = spec.geometry
        self.shape = spec.shape
        direction = self.geometry.direction
        if not np.allclose(np.abs(direction) @ np.ones(3), 1.0) or not np.allclose(np.abs(direction).sum(0), 1.0):
            raise ValueError(f"synthetic scans need an axis-aligned direction, got {direction.tolist()}")
        center_irc = (np.array(self.shape, dtype=np.float64) - 1.0) / 2.0
        self.center = self.geometry.irc_to_xyz(center_irc)
        # per array axis a: which patient axis it runs along, and the mm value of each index
        self._axes = []
        for a in range(3):
            k = 2 - a  # array axis a is column k of the direction (CRI order)
            w = int(np.argmax(np.abs(direction[:, k])))
            step = direction[w, k] * self.geometry.spacing[k]
            start = self.geometry.origin[w] - self.center[w]
            self._axes.append((w, start, step))
        # xyz -> irc is affine: take it from the geometry once, at the centre and one mm along each axis,
        # rather than re-validating the header on each of the many small lookups
        probe = self.geometry.xyz_to_irc_float(self.center + np.vstack([np.zeros(3), np.eye(3)]))
        self._irc0, self._irc_per_mm = probe[0], probe[1:] - probe[0]
        self.voxel_mm = np.array([self.geometry.spacing[2 - a] for a in range(3)])  # per array axis
        self.voxel_volume_mm3 = float(np.prod(self.geometry.spacing))

    def extent_mm(self, world_axis: int) -> float:
        """Length covered along patient axis 0=X, 1=Y, 2=Z (voxel centre to centre)."""
        for a, (w, _, step) in enumerate(self._axes):
            if w == world_axis:
                return abs(step) * (self.shape[a] - 1)
        raise AssertionError("unreachable: axis-aligned direction")

    def coords(self, box: tuple[slice, slice, slice] | None = None) -> list[np.ndarray]:
        """[X, Y, Z] float32 arrays (mm from the centre) broadcasting over `box`."""
        out: list[np.ndarray] = [None, None, None]  # type: ignore[list-item]
        for a, (w, start, step) in enumerate(self._axes):
            sl = box[a] if box is not None else slice(0, self.shape[a])
            idx = np.arange(sl.start, sl.stop, dtype=np.float64)
            view = [1, 1, 1]
            view[a] = idx.size
            out[w] = (start + step * idx).astype(np.float32).reshape(view)
        return out

    def to_irc(self, points: np.ndarray) -> np.ndarray:
        """Fractional (I, R, C) of (N, 3) points in mm from the centre."""
        return np.asarray(points, dtype=np.float64).reshape(-1, 3) @ self._irc_per_mm + self._irc0

    def to_world(self, points: np.ndarray) -> np.ndarray:
        return np.asarray(points, dtype=np.float64).reshape(-1, 3) + self.center

    def irc_to_rel(self, irc: np.ndarray) -> np.ndarray:
        return self.geometry.irc_to_xyz(np.asarray(irc, dtype=np.float64).reshape(-1, 3)) - self.center

    def box(self, lo: np.ndarray, hi: np.ndarray) -> tuple[slice, slice, slice] | None:
        """Index box covering the mm box [lo, hi] (relative), clipped to the array; None if empty."""
        corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
        irc = self.to_irc(corners)
        start = np.maximum(np.floor(irc.min(0)).astype(np.int64), 0)
        stop = np.minimum(np.ceil(irc.max(0)).astype(np.int64) + 1, self.shape)
        if np.any(stop <= start):
            return None
        return tuple(slice(int(s), int(e)) for s, e in zip(start, stop))  # type: ignore[return-value]

    def label_at(self, labels: np.ndarray, points: np.ndarray) -> np.ndarray:
        """Label of the voxel nearest each point (mm from centre); 0 outside the array."""
        irc = np.floor(self.to_irc(points) + 0.5).astype(np.int64)
        inside = np.all((irc >= 0) & (irc < np.array(self.shape)), axis=1)
        out = np.zeros(len(irc), dtype=labels.dtype)
        i = irc[inside]
        out[inside] = labels[i[:, 0], i[:, 1], i[:, 2]]
        return out

    def sample_voxels(self, rng: np.random.Generator, labels: np.ndarray, wanted, n: int,
                      max_tries: int = 50) -> np.ndarray:
        """Up to `n` random voxel indices (N, 3) whose label is in `wanted` (rejection sampling)."""
        wanted = np.asarray(list(wanted), dtype=labels.dtype)
        flat = labels.reshape(-1)
        found: list[np.ndarray] = []
        count = 0
        for _ in range(max_tries):
            idx = rng.integers(0, flat.size, size=max(4 * n, 1024))
            idx = idx[np.isin(flat[idx], wanted)]
            found.append(idx)
            count += idx.size
            if count >= n:
                break
        idx = np.concatenate(found)[:n]
        return np.stack(np.unravel_index(idx, labels.shape), axis=1).astype(np.int64)
