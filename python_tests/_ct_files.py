"""Tiny .mhd scans for the data-layer tests, written by SimpleITK (the truth)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
# Direction matrices (row-major, SimpleITK's convention), none symmetric-only.
DIRECTIONS = {
    "identity": IDENTITY,
    "flip_x": (-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0),
    "flip_yz": (1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, -1.0),
    "cycle": (0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0),  # a permutation, not symmetric
    "cycle_flip": (0.0, -1.0, 0.0, 0.0, 0.0, 1.0, -1.0, 0.0, 0.0),
}


def rotation(axis, degrees) -> tuple[float, ...]:
    """An oblique orthonormal direction (Rodrigues), row-major."""
    k = np.asarray(axis, dtype=np.float64)
    k /= np.linalg.norm(k)
    t = np.deg2rad(degrees)
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return tuple((np.eye(3) + np.sin(t) * K + (1 - np.cos(t)) * K @ K).ravel())


def volume(shape=(5, 6, 7), dtype=np.int16, seed=0) -> np.ndarray:
    """Distinct-looking HU-like values so a wrong axis order or offset shows."""
    rng = np.random.default_rng(seed)
    return rng.integers(-1200, 1500, size=shape).astype(dtype)


def write_scan(
    path,
    array: np.ndarray,
    *,
    spacing=(0.7, 0.8, 2.5),
    origin=(-12.5, 30.25, -101.0),
    direction=IDENTITY,
    compress: bool = False,
) -> Path:
    """Write array (I, R, C) as a .mhd + .raw/.zraw with SimpleITK."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetOrigin(tuple(float(o) for o in origin))
    image.SetDirection(tuple(float(d) for d in direction))
    sitk.WriteImage(image, str(path), useCompression=compress)
    return path


def edit_header(mhd: Path, replace: dict[str, str | None] | None = None, out: Path | None = None) -> Path:
    """Rewrite header fields: {key: new value} (None removes the line)."""
    replace = replace or {}
    lines = []
    for line in mhd.read_text().splitlines():
        key = line.split("=")[0].strip()
        if key in replace:
            if replace[key] is None:
                continue
            line = f"{key} = {replace[key]}"
        lines.append(line)
    target = out or mhd
    target.write_text("\n".join(lines) + "\n")
    return target


def sitk_array(mhd: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(mhd)))
