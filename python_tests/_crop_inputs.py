"""Inputs and the exact comparison shared by the crop3d tests."""

import itertools

import torch

from torchlite.ops.crop import crop3d
from torchlite.ops.reference import crop3d_reference


def make_volume(shape, dtype=torch.int16, seed=0):
    g = torch.Generator().manual_seed(seed)
    v = torch.randint(-1200, 3001, shape, generator=g, dtype=torch.int32)
    if dtype == torch.float32:
        return (v.float() + torch.rand(shape, generator=g)).contiguous()
    return v.to(dtype)


def random_centers(shape, size, n, seed=0):
    """Centers from well outside to well inside each axis."""
    g = torch.Generator().manual_seed(seed)
    cols = [torch.randint(-s - 2, dim + s + 2, (n,), generator=g) for dim, s in zip(shape, size)]
    return torch.stack(cols, dim=1)


def grid_truth(volume, centers, size, fill, clamp, clip):
    """Independent truth: each output voxel gathers its own coordinate."""
    n = centers.shape[0]
    out = torch.full((n, 1, *size), float(fill), dtype=torch.float32)
    vol = volume.to(torch.float32)
    if clip is not None:
        vol = vol.clamp(float(clip[0]), float(clip[1]))
    for i in range(n):
        coords = []
        for c, s, dim in zip(centers[i].tolist(), size, volume.shape):
            start = c - s // 2
            if clamp:
                start = min(max(start, 0), max(dim - s, 0))
            coords.append([start + k for k in range(s)])
        for (a, za), (b, yb), (e, xe) in itertools.product(*(list(enumerate(cs)) for cs in coords)):
            if 0 <= za < volume.shape[0] and 0 <= yb < volume.shape[1] and 0 <= xe < volume.shape[2]:
                out[i, 0, a, b, e] = vol[za, yb, xe]
    return out


def assert_same(got, want):
    assert got.dtype == torch.float32 and got.is_contiguous()
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)


def check(volume, centers, size, fill=-1000.0, clamp=False, clip=None):
    got = crop3d(volume, centers, size, fill=fill, clamp=clamp, clip=clip)
    want = crop3d_reference(volume, centers, size, fill=fill, clamp=clamp, clip=clip)
    assert_same(got, want)
    return got
