"""crop3d against the book's per-candidate loop and a tuned numpy loop.

One training batch of classifier candidates: 256 patches of 32x48x48 from a
300x512x512 int16 scan, HU clipped to [-1000, 1000]. Every case crops the
same centers from the same volume.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from torchlite.bench.cases.memory import write_bandwidth_case
from torchlite.bench.registry import Case, register

VOLUME_SHAPE = (300, 512, 512)
N_PATCHES = 256
SIZE = (32, 48, 48)
CLIP = (-1000.0, 1000.0)
FILL = -1000.0
GROUP = "crop3d: 256 x 32x48x48 from 300x512x512 int16"

_OUT_NUMEL = N_PATCHES * SIZE[0] * SIZE[1] * SIZE[2]
# float32 written + int16 read (a whole patch each; the few patches hanging
# over the scan's edge read a little less).
_NBYTES = _OUT_NUMEL * 4 + _OUT_NUMEL * 2

NUMPY_LOOP = "numpy clip-and-pad loop into a preallocated output"


@functools.lru_cache(maxsize=1)
def _cpu_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1234)
    volume = torch.randint(-1200, 3001, VOLUME_SHAPE, dtype=torch.int16, generator=g)
    centers = torch.stack([torch.randint(0, dim, (N_PATCHES,), generator=g) for dim in VOLUME_SHAPE], dim=1)
    return volume, centers


def _inputs(device: str) -> tuple[torch.Tensor, torch.Tensor]:
    volume, centers = _cpu_inputs()
    return volume.to(device), centers.to(device)


def _make_book_loop(quick: bool, device: str):
    from torchlite.ops.reference import crop3d_reference

    volume, centers = _inputs(device)

    def run():
        return crop3d_reference(volume, centers, SIZE, fill=FILL, clamp=True, clip=CLIP)

    return run


def _make_numpy_loop(quick: bool, device: str):
    volume, centers = _inputs("cpu")
    vol = volume.numpy()
    boxes = []  # per patch: (src slices, dst slices or None when whole)
    for center in centers.tolist():
        src, dst = [], []
        for c, s, dim in zip(center, SIZE, VOLUME_SHAPE):
            start = c - s // 2
            lo, hi = max(start, 0), min(start + s, dim)
            src.append(slice(lo, hi))
            dst.append(slice(lo - start, hi - start))
        whole = all(d.start == 0 and d.stop == s for d, s in zip(dst, SIZE))
        boxes.append((tuple(src), None if whole else tuple(dst)))
    out = np.empty((N_PATCHES, 1, *SIZE), dtype=np.float32)
    lo, hi = np.float32(CLIP[0]), np.float32(CLIP[1])

    def run():
        for i, (src, dst) in enumerate(boxes):
            patch = out[i, 0]
            if dst is None:
                np.clip(vol[src], lo, hi, out=patch)
            else:
                patch.fill(FILL)
                np.clip(vol[src], lo, hi, out=patch[dst])
        return out

    return run


def _make_crop3d(quick: bool, device: str):
    from torchlite.ops.crop import crop3d

    volume, centers = _inputs(device)

    def run():
        return crop3d(volume, centers, SIZE, fill=FILL, clip=CLIP)

    return run


def _make_crop3d_out(quick: bool, device: str):
    from torchlite.ops.crop import crop3d

    volume, centers = _inputs(device)
    out = torch.zeros((N_PATCHES, 1, *SIZE), dtype=torch.float32, device=device)

    def run():
        return crop3d(volume, centers, SIZE, fill=FILL, clip=CLIP, out=out)

    return run


register(
    Case(
        GROUP,
        "reference: book's per-candidate slicing (clamp=True)",
        _make_book_loop,
        nbytes=_NBYTES,
        devices=("cpu", "cuda"),
    )
)
register(Case(GROUP, NUMPY_LOOP, _make_numpy_loop, nbytes=_NBYTES))
register(
    Case(
        GROUP,
        "torchlite.crop3d (fresh output)",
        _make_crop3d,
        targets={NUMPY_LOOP: 1.5},
        nbytes=_NBYTES,
        devices=("cpu", "cuda"),
    )
)
register(
    Case(
        GROUP,
        "torchlite.crop3d(out=preallocated)",
        _make_crop3d_out,
        targets={NUMPY_LOOP: 3.0},
        nbytes=_NBYTES,
        devices=("cpu", "cuda"),
    )
)
register(write_bandwidth_case(GROUP, _OUT_NUMEL))
