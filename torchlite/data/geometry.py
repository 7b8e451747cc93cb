"""CT geometry: patient coordinates (XYZ, millimetres) <-> array indices (IRC).

Arrays are indexed [I, R, C] = [z, y, x] (slice, row, column); the header's
origin and spacing are in X, Y, Z order; ``direction`` is the full 3x3 matrix
whose column k is the patient-space direction of array axis k in CRI order
(SimpleITK's ``GetDirection()`` reshaped row-major). With cri = irc[::-1]:

    xyz = origin + direction @ (cri * spacing)
    cri = (direction^-1 @ (xyz - origin)) / spacing

The book's IRC -> XYZ is this formula, but its XYZ -> IRC multiplies the row
vector ``(xyz - origin) @ inv(direction)``, i.e. applies the *transpose* of
the inverse: the pair disagrees (and XYZ -> IRC is wrong) whenever the
direction is not symmetric, e.g. a permutation of axes. Here both use the
same matrix and are exact inverses for any invertible direction.

Rounding to integer indices is half-up (``floor(x + 0.5)``), as ITK's
``TransformPhysicalPointToIndex`` does (the book's ``np.round`` rounds half
to even, which disagrees with SimpleITK on exact ties).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _vec3(name: str, value) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != (3,):
        raise ValueError(f"`{name}` must have 3 values (X, Y, Z), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"`{name}` must be finite, got {arr.tolist()}")
    return arr


def _spacing(value) -> np.ndarray:
    arr = _vec3("spacing", value)
    if np.any(arr <= 0):
        raise ValueError(f"`spacing` must be positive, got {arr.tolist()}")
    return arr


def _direction(value) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape == (9,):
        arr = arr.reshape(3, 3)
    if arr.shape != (3, 3):
        raise ValueError(f"`direction` must be 3x3 (or 9 values, row-major), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or abs(np.linalg.det(arr)) < 1e-6:
        raise ValueError(f"`direction` must be an invertible matrix, got {arr.tolist()}")
    return arr


def _points(name: str, value) -> tuple[np.ndarray, bool]:
    """(N, 3) float64 view of one point or N points, and whether it was one."""
    arr = np.asarray(value, dtype=np.float64)
    single = arr.ndim == 1
    if single:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f"`{name}` must have shape (3,) or (N, 3), got {np.shape(value)}")
    return arr, single


def irc_to_xyz(irc, origin, spacing, direction) -> np.ndarray:
    """Array index (I, R, C), integer or fractional -> patient XYZ in mm.

    ``irc`` is one point (3,) or N points (N, 3); the result has the same
    shape, float64.
    """
    pts, single = _points("irc", irc)
    cri = pts[:, ::-1]
    xyz = _vec3("origin", origin) + (cri * _spacing(spacing)) @ _direction(direction).T
    return xyz[0] if single else xyz


def xyz_to_irc_float(xyz, origin, spacing, direction) -> np.ndarray:
    """Patient XYZ in mm -> fractional array index (I, R, C), float64."""
    pts, single = _points("xyz", xyz)
    inverse = np.linalg.inv(_direction(direction))
    cri = ((pts - _vec3("origin", origin)) @ inverse.T) / _spacing(spacing)
    irc = cri[:, ::-1]
    return irc[0] if single else irc


def xyz_to_irc(xyz, origin, spacing, direction) -> np.ndarray:
    """Patient XYZ in mm -> nearest array index (I, R, C), int64, half-up."""
    return np.floor(xyz_to_irc_float(xyz, origin, spacing, direction) + 0.5).astype(np.int64)


@dataclass(frozen=True, eq=False)  # arrays have no single truth value to compare
class Geometry:
    """Where a scan's voxels lie in patient space.

    ``origin``/``spacing`` are in XYZ order (as in the header), ``shape`` in
    IRC order (as the array), ``direction`` is 3x3 (see the module doc).
    """

    origin: np.ndarray
    spacing: np.ndarray
    direction: np.ndarray
    shape: tuple[int, int, int]

    def __post_init__(self):
        object.__setattr__(self, "origin", _vec3("origin", self.origin))
        object.__setattr__(self, "spacing", _spacing(self.spacing))
        object.__setattr__(self, "direction", _direction(self.direction))
        shape = tuple(int(s) for s in self.shape)
        if len(shape) != 3 or min(shape) < 0:
            raise ValueError(f"`shape` must be 3 non-negative sizes (I, R, C), got {self.shape}")
        object.__setattr__(self, "shape", shape)

    def xyz_to_irc(self, xyz) -> np.ndarray:
        return xyz_to_irc(xyz, self.origin, self.spacing, self.direction)

    def xyz_to_irc_float(self, xyz) -> np.ndarray:
        return xyz_to_irc_float(xyz, self.origin, self.spacing, self.direction)

    def irc_to_xyz(self, irc) -> np.ndarray:
        return irc_to_xyz(irc, self.origin, self.spacing, self.direction)

    def contains_irc(self, irc) -> np.ndarray:
        """Whether each integer index lies inside the array (bool, per point)."""
        pts = np.asarray(irc)
        return np.all((pts >= 0) & (pts < np.asarray(self.shape)), axis=-1)
