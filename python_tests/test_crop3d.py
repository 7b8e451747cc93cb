"""torchlite.crop3d against the book's slicing loop (torchlite/ops/reference.py).

A crop is a copy plus a clip, so the operator must match the reference
exactly. The reference itself is checked against a second, independent
truth: an index-grid gather (every output voxel computes its own volume
coordinate and looks it up). API, compile and error tests: test_crop3d_api.py.
"""

import itertools
import warnings

import numpy as np
import pytest
import torch
from _crop_inputs import assert_same, check, grid_truth, make_volume, random_centers

from torchlite.ops.crop import crop3d
from torchlite.ops.reference import crop3d_reference

OP_OUT = torch.ops.torchlite.crop3d_out
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


# --- agreement with the reference ----------------------------------------------


@pytest.mark.parametrize("dtype", [torch.int16, torch.float32])
@pytest.mark.parametrize("clamp", [False, True])
@pytest.mark.parametrize("clip", [None, (-1000.0, 1000.0), (-0.5, 0.5)])
def test_random_matches_reference(dtype, clamp, clip):
    g = torch.Generator().manual_seed(7)
    for trial in range(4):
        shape = tuple(torch.randint(1, 24, (3,), generator=g).tolist())
        size = tuple(torch.randint(1, 17, (3,), generator=g).tolist())
        volume = make_volume(shape, dtype, seed=trial)
        centers = random_centers(shape, size, 24, seed=trial)
        check(volume, centers, size, fill=-777.0, clamp=clamp, clip=clip)


@pytest.mark.parametrize("clamp", [False, True])
def test_reference_agrees_with_index_grid(clamp):
    shape, size = (6, 7, 9), (4, 5, 3)
    volume = make_volume(shape, torch.float32, seed=3)
    centers = random_centers(shape, size, 12, seed=3)
    want = grid_truth(volume, centers, size, -5.0, clamp, (0.0, 900.0))
    assert_same(crop3d_reference(volume, centers, size, fill=-5.0, clamp=clamp, clip=(0.0, 900.0)), want)
    assert_same(crop3d(volume, centers, size, fill=-5.0, clamp=clamp, clip=(0.0, 900.0)), want)


def face_and_corner_centers(shape, far=50):
    mid = [d // 2 for d in shape]
    out = []
    for axis, dim in enumerate(shape):
        for c in (-far, -3, -1, 0, 1, dim - 2, dim - 1, dim, dim + 2, dim + far):
            p = list(mid)
            p[axis] = c
            out.append(p)
    for corner in itertools.product(*[(0, d - 1) for d in shape]):
        out.append(list(corner))
    for corner in itertools.product(*[(-1, d) for d in shape]):
        out.append(list(corner))
    return torch.tensor(out, dtype=torch.int64)


@pytest.mark.parametrize("size", [(5, 7, 3), (4, 6, 2), (1, 1, 1), (2, 9, 8)], ids=str)
@pytest.mark.parametrize("clamp", [False, True])
@pytest.mark.parametrize("dtype", [torch.int16, torch.float32])
def test_faces_and_corners(size, clamp, dtype):
    shape = (9, 10, 11)
    volume = make_volume(shape, dtype, seed=1)
    centers = face_and_corner_centers(shape)
    got = check(volume, centers, size, clamp=clamp, clip=(-500.0, 2000.0))
    if not clamp:
        # A center `far` outside yields nothing but fill.
        assert torch.all(got[0] == -1000.0)
    else:
        # Clamped windows lie inside (size < volume here): no fill, and the
        # data, clipped to >= -500, is never -1000.
        assert not torch.any(got == -1000.0)


@pytest.mark.parametrize("clamp", [False, True])
def test_size_larger_than_volume(clamp):
    volume = make_volume((3, 4, 5), seed=2)
    centers = torch.tensor([[1, 2, 2], [0, 0, 0], [2, 3, 4], [-4, 9, 1]])
    got = check(volume, centers, (8, 4, 11), fill=7.0, clamp=clamp)
    if clamp:
        # Start 0 on the too-short axes: the volume sits in the front corner.
        torch.testing.assert_close(got[:, 0, :3, :, :5], volume.float().expand(4, 3, 4, 5), rtol=0, atol=0)
        assert torch.all(got[:, 0, 3:] == 7.0) and torch.all(got[:, 0, :, :, 5:] == 7.0)


@pytest.mark.parametrize("clamp", [False, True])
def test_extreme_centers_do_not_overflow(clamp):
    volume = make_volume((5, 6, 7), seed=4)
    values = [INT64_MIN, INT64_MIN + 1, -(2**62), -1, 2**62, INT64_MAX - 1, INT64_MAX]
    centers = torch.tensor([[a, b, c] for a, b, c in itertools.product(values, [3, INT64_MIN], [INT64_MAX, 2])])
    for size in [(3, 4, 5), (6, 7, 8), (1, 1, 1)]:
        got = check(volume, centers, size, fill=-0.5, clamp=clamp)
        far = (centers.abs() >= 2**62).any(dim=1)
        assert far.sum() > 0 and (~far).sum() > 0
        if not clamp:
            assert torch.all(got[far] == -0.5)
        elif all(s <= d for s, d in zip(size, volume.shape)):
            # Clamped far centers still crop real data from the volume's edge.
            assert not torch.any(got[far] == -0.5)


def test_nan_and_inf_pass_like_torch_clamp():
    volume = make_volume((4, 5, 6), torch.float32, seed=5)
    volume[1, 2, 3] = float("nan")
    volume[2, 2, 2] = float("inf")
    volume[0, 0, 0] = float("-inf")
    centers = torch.tensor([[2, 2, 3], [0, 0, 0]])
    got = check(volume, centers, (3, 3, 3), clip=(-100.0, 100.0))
    assert torch.isnan(got).sum() == 1
    assert got[torch.isfinite(got)].abs().max() <= 1000.0
    check(volume, centers, (3, 3, 3))  # no clip: inf stays inf


def test_fill_is_not_clipped():
    volume = make_volume((4, 4, 4), seed=6)
    got = check(volume, torch.tensor([[0, 0, 0]]), (3, 3, 3), fill=-3000.0, clip=(-1000.0, 1000.0))
    assert got[0, 0, 0, 0, 0] == -3000.0  # outside: fill, as given
    assert got[0, 0, 1:, 1:, 1:].abs().max() <= 1000.0  # inside: clipped


def test_defaults_fill_air_no_clamp_no_clip():
    volume = torch.full((3, 3, 3), 5000, dtype=torch.int16)
    got = crop3d(volume, torch.tensor([[0, 0, 0]]), (2, 2, 2))
    assert got[0, 0, 0, 0, 0] == -1000.0 and got[0, 0, 1, 1, 1] == 5000.0


# --- layouts ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.int16, torch.float32])
def test_non_contiguous_volume_and_centers(dtype):
    base = make_volume((14, 16, 18), dtype, seed=8)
    views = {
        "permuted": base.permute(2, 0, 1),
        "stepped": base[1::2, ::3, 2:],
        "flipped-slice": base[:, 3:11, :].transpose(0, 1),
        "expanded": base[:1, :1, :].expand(9, 10, 18),
    }
    size = (5, 4, 7)
    for name, v in views.items():
        assert not v.is_contiguous(), name
        wide = random_centers(v.shape, size, 20, seed=9).repeat_interleave(2, dim=1)
        centers = wide[:, ::2]  # strided (N, 3) view
        assert not centers.is_contiguous()
        for clamp in (False, True):
            check(v, centers, size, clamp=clamp, clip=(-100.0, 1500.0))
    centers_t = torch.tensor([[3, 4, 5], [6, 7, 8]]).t().contiguous().t()
    check(base, centers_t, size)


def test_memory_mapped_npy_is_read_in_place(tmp_path):
    array = make_volume((12, 13, 14), seed=10).numpy()
    path = tmp_path / "scan.npy"
    np.save(path, array)
    mm = np.load(path, mmap_mode="r")
    assert isinstance(mm, np.memmap) and not mm.flags.writeable
    with warnings.catch_warnings():
        # from_numpy warns that a read-only array is not writable; crop3d never writes to it.
        warnings.simplefilter("ignore", UserWarning)
        volume = torch.from_numpy(mm)
        transposed = torch.from_numpy(mm.transpose(1, 2, 0))
    assert volume.data_ptr() == mm.__array_interface__["data"][0]  # zero copy
    centers = random_centers(volume.shape, (6, 5, 4), 16, seed=11)
    got = crop3d(volume, centers, (6, 5, 4), clip=(-1000.0, 1000.0))
    assert_same(got, crop3d_reference(torch.from_numpy(array), centers, (6, 5, 4), clip=(-1000.0, 1000.0)))
    check(transposed, random_centers(transposed.shape, (3, 3, 3), 8, seed=12), (3, 3, 3))


def test_raw_memmap_int16(tmp_path):
    array = make_volume((7, 8, 9), seed=13).numpy()
    raw = tmp_path / "scan.raw"
    array.tofile(raw)
    mm = np.memmap(raw, dtype=np.int16, mode="r", shape=array.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        volume = torch.from_numpy(mm)
    assert volume.data_ptr() == mm.ctypes.data
    check(volume, random_centers(array.shape, (4, 4, 4), 10, seed=14), (4, 4, 4), clamp=True)


@pytest.mark.parametrize("n", [0, 1])
def test_batch_zero_and_one(n):
    volume = make_volume((6, 6, 6), seed=15)
    centers = torch.tensor([[3, 3, 3]])[:n]
    got = check(volume, centers, (4, 5, 3))
    assert got.shape == (n, 1, 4, 5, 3)
    buf = torch.empty(n, 1, 4, 5, 3)
    assert crop3d(volume, centers, (4, 5, 3), out=buf) is buf


def test_empty_volume_gives_fill():
    for shape in [(0, 5, 5), (5, 0, 5), (5, 5, 0)]:
        volume = torch.empty(shape, dtype=torch.int16)
        for clamp in (False, True):
            got = check(volume, torch.tensor([[0, 0, 0], [2, 2, 2]]), (3, 3, 3), fill=1.5, clamp=clamp)
            assert torch.all(got == 1.5)


_GUARD_SCRIPT = r"""
import ctypes, mmap, sys
import numpy as np, torch
from torchlite.ops.crop import crop3d
from torchlite.ops.reference import crop3d_reference

# A volume filling one page exactly, between two pages that fault on access:
# a read one voxel before or after it crashes this process.
page = mmap.PAGESIZE
buf = mmap.mmap(-1, 3 * page)
base = np.frombuffer(buf, dtype=np.uint8)
libc = ctypes.CDLL(None)
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
addr = base.ctypes.data
assert libc.mprotect(addr, page, 0) == 0 and libc.mprotect(addr + 2 * page, page, 0) == 0
for dtype, shape in [(np.int16, (8, 16, page // 256)), (np.float32, (4, 16, page // 256))]:
    arr = base[page : 2 * page].view(dtype).reshape(shape)
    arr[...] = np.arange(arr.size).reshape(shape) % 3000
    volume = torch.from_numpy(arr)
    dims = volume.shape
    centers = torch.tensor(
        [[a, b, c] for a in (-1, 0, dims[0] - 1, dims[0]) for b in (-1, 0, dims[1] - 1, dims[1]) for c in (-2, 0, dims[2] - 1, dims[2] + 1)]
    )
    for size in [(3, 4, 5), (2, 2, 2), (9, 17, 1)]:
        for clamp in (False, True):
            for v in (volume, volume.transpose(0, 2)):
                got = crop3d(v, centers, size, clamp=clamp)
                assert torch.equal(got, crop3d_reference(v, centers, size, clamp=clamp))
print("ok")
"""


def test_no_read_outside_the_volume(tmp_path):
    # Run apart: an out-of-bounds read here is a segfault, not an exception.
    import os
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    res = subprocess.run([sys.executable, "-c", _GUARD_SCRIPT], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), res.stderr[-3000:]


def test_large_batch_on_several_threads():
    # Big enough (> 8 MB) for the fresh output's huge-page path and for many
    # tasks split across threads mid-patch, with a width that is not a
    # multiple of any vector size.
    volume = make_volume((40, 70, 61), seed=16)
    centers = random_centers(volume.shape, (16, 24, 23), 300, seed=17)
    got = check(volume, centers, (16, 24, 23), clip=(-1000.0, 1000.0))
    assert got.numel() * 4 > 8 << 20
    buf = torch.full_like(got, float("nan"))
    assert_same(crop3d(volume, centers, (16, 24, 23), clip=(-1000.0, 1000.0), out=buf), got)


# --- out= --------------------------------------------------------------------------


@pytest.mark.parametrize("clamp", [False, True])
def test_out_overwrites_every_voxel(clamp):
    volume = make_volume((10, 11, 12), torch.float32, seed=18)
    centers = random_centers(volume.shape, (5, 6, 7), 15, seed=19)
    buf = torch.full((15, 1, 5, 6, 7), float("nan"))
    res = crop3d(volume, centers, (5, 6, 7), clamp=clamp, clip=(0.0, 500.0), out=buf)
    assert res is buf
    assert_same(buf, crop3d_reference(volume, centers, (5, 6, 7), clamp=clamp, clip=(0.0, 500.0)))
    # The operator form returns nothing and writes in place.
    buf.fill_(float("nan"))
    assert OP_OUT(volume, centers, [5, 6, 7], -1000.0, clamp, [0.0, 500.0], buf) is None
    assert not torch.isnan(buf).any()
