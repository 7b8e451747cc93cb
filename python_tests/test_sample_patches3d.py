"""sample_patches3d against crop3d (identity) and a per-patch grid_sample reference."""

import math

import numpy as np
import pytest
import torch

from torchlite.ops import reference
from torchlite.ops.affine import affine3d
from torchlite.ops.sample_patches import sample_patches3d
from torchlite.ops.theta import normalized_theta_to_voxel, voxel_theta_to_normalized

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
SIZE = (5, 6, 7)


def _gen(seed):
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def _volume(dtype=torch.float32, shape=(20, 24, 28), seed=0):
    v = torch.randn(shape, generator=_gen(seed)) * 400
    return v.round().to(torch.int16) if dtype == torch.int16 else v


# Inside, on every face, at corners, partly and wholly outside.
CENTERS = torch.tensor(
    [[10, 12, 14], [0, 12, 14], [19, 12, 14], [10, 0, 14], [10, 23, 14], [10, 12, 0], [10, 12, 27],
     [0, 0, 0], [19, 23, 27], [-2, 25, 30], [40, 12, 14], [-100, -100, -100]]
)


def _identity(n):
    return torch.eye(3, 4).repeat(n, 1, 1)


def _rotations(n, seed=0):
    """Voxel thetas: rotation about the index axis, scale, flips, sub-voxel shift."""
    g = _gen(seed)
    angle = torch.rand(n, generator=g) * 2 * math.pi
    theta = torch.zeros(n, 3, 4)
    theta[:, 0, 0] = torch.where(torch.rand(n, generator=g) > 0.5, -1.0, 1.0)
    scale = 1 + 0.2 * (torch.rand(n, 2, generator=g) * 2 - 1)
    theta[:, 1, 1], theta[:, 1, 2] = angle.cos() * scale[:, 0], -angle.sin() * scale[:, 0]
    theta[:, 2, 1], theta[:, 2, 2] = angle.sin() * scale[:, 1], angle.cos() * scale[:, 1]
    theta[:, :, 3] = torch.rand(n, 3, generator=g) * 2 - 1
    return theta


def _crop_truth(volume, centers, size, fill, clip=None):
    """crop3d's kernel when it is built in, else its plain-PyTorch reference."""
    if torch._C._dispatch_has_kernel_for_dispatch_key("torchlite::crop3d", volume.device.type.upper()):
        from torchlite.ops.crop import crop3d

        return crop3d(volume, centers, size, fill=fill, clip=clip)
    return reference.crop3d_reference(volume, centers, size, fill=fill, clip=clip)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("clip", [None, (-300.0, 500.0)])
@pytest.mark.parametrize("dtype", [torch.int16, torch.float32])
def test_identity_equals_crop3d_exactly(dtype, clip, device):
    vol = _volume(dtype).to(device)
    centers = CENTERS.to(device)
    got = sample_patches3d(vol, centers, _identity(len(centers)).to(device), SIZE, fill=-1000.0, clip=clip)
    assert got.shape == (len(centers), 1, *SIZE) and got.dtype == torch.float32
    want = reference.crop3d_reference(vol, centers, SIZE, fill=-1000.0, clip=clip)
    assert torch.equal(got, want)
    assert torch.equal(got, _crop_truth(vol, centers, SIZE, -1000.0, clip))


@pytest.mark.parametrize("size", [(1, 1, 1), (4, 4, 4), (3, 8, 2)])
def test_identity_equals_crop3d_for_odd_and_even_sizes(size):
    vol = _volume(torch.int16)
    got = sample_patches3d(vol, CENTERS, _identity(len(CENTERS)), size)
    assert torch.equal(got, reference.crop3d_reference(vol, CENTERS, size))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("clip", [None, (-200.0, 300.0)])
def test_rotations_match_the_reference(clip, device):
    vol = _volume(torch.float32).to(device) / 400  # unit scale: 1e-4 is relative
    n = len(CENTERS)
    theta = _rotations(n).to(device)
    got = sample_patches3d(vol, CENTERS.to(device), theta, SIZE, fill=-2.5, clip=None if clip is None else [c / 400 for c in clip])
    want = reference.sample_patches3d_reference(
        vol, CENTERS.to(device), theta, SIZE, fill=-2.5, clip=None if clip is None else [c / 400 for c in clip]
    )
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_many_angles_match_the_reference():
    # The CPU plane path reads only the parallelogram each rotated plane
    # covers; sweep the angle (and odd/even sizes, sub-voxel centers) so a
    # skipped voxel that is read would show.
    vol = _volume(torch.float32, shape=(12, 40, 44)) / 400
    n = 48
    g = _gen(11)
    centers = torch.rand(n, 3, generator=g, dtype=torch.float64) * torch.tensor([12.0, 40.0, 44.0]) - 2
    theta = _rotations(n, seed=12)
    theta[:, 1:, 1:3] *= 1 + torch.rand(n, 1, 1, generator=g)  # zoom out up to 2x
    for size in [(3, 9, 11), (2, 10, 8)]:
        got = sample_patches3d(vol, centers, theta, size, fill=-0.75)
        want = reference.sample_patches3d_reference(vol, centers, theta, size, fill=-0.75)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_int16_volume_matches_the_reference():
    vol = _volume(torch.int16)
    theta = _rotations(len(CENTERS), seed=1)
    got = sample_patches3d(vol, CENTERS, theta, SIZE, clip=[-1000, 1000])
    want = reference.sample_patches3d_reference(vol, CENTERS, theta, SIZE, clip=[-1000, 1000])
    torch.testing.assert_close(got, want, rtol=1e-5, atol=2e-3)  # HU scale: float32 rounding


def test_general_affine_with_shear_matches_the_reference():
    vol = _volume(torch.float32) / 400
    theta = torch.eye(3, 4) + 0.4 * torch.randn(len(CENTERS), 3, 4, generator=_gen(5))
    theta[:, :, 3] *= 5
    got = sample_patches3d(vol, CENTERS, theta, SIZE, fill=0.5)
    torch.testing.assert_close(got, reference.sample_patches3d_reference(vol, CENTERS, theta, SIZE, fill=0.5), rtol=1e-4, atol=1e-4)


def test_plane_path_equals_voxel_path():
    # In-plane rotations take the CPU's plane path; a 1e-12 z term forces
    # the per-voxel path over the same positions. A strong zoom-out (a
    # footprint too sparse for the plane path) must agree with the reference.
    vol = _volume(torch.int16)
    theta = _rotations(len(CENTERS), seed=6)
    nudged = theta.double().clone()
    nudged[:, 0, 2] = 1e-12
    plane = sample_patches3d(vol, CENTERS, theta, SIZE, clip=[-500, 500])
    voxel = sample_patches3d(vol, CENTERS, nudged, SIZE, clip=[-500, 500])
    torch.testing.assert_close(plane, voxel, rtol=0, atol=1e-3)
    big = _volume(torch.float32, shape=(6, 200, 200)) / 400
    zoom = _rotations(3, seed=7)
    zoom[:, 1:, 1:3] *= 30  # a 4x5 patch spread over ~150x150 voxels
    centers = torch.tensor([[3, 100, 100], [0, 50, 150], [5, 180, 20]])
    torch.testing.assert_close(
        sample_patches3d(big, centers, zoom, (3, 4, 5)),
        reference.sample_patches3d_reference(big, centers, zoom, (3, 4, 5)),
        rtol=1e-4, atol=1e-4,
    )


def test_rotated_corners_read_real_tissue():
    # The point of the operator: a 45-degree rotation of a patch in the middle
    # of the scan reads voxels beyond the unrotated crop instead of padding.
    vol = _volume(torch.float32)
    center = torch.tensor([[10, 12, 14]])
    c, s = math.cos(math.pi / 4), math.sin(math.pi / 4)
    theta = torch.tensor([[[1.0, 0, 0, 0], [0, c, -s, 0], [0, s, c, 0]]])
    got = sample_patches3d(vol, center, theta, SIZE, fill=-1000.0)
    assert (got > -999).all()


def test_clip_keeps_nan():
    # As torch.clamp and crop3d: a NaN voxel is not clipped into range.
    vol = torch.zeros(9, 9, 9)
    vol[4, 4, 4] = float("nan")
    out = sample_patches3d(vol, torch.tensor([[4, 4, 4]]), _identity(1), (5, 5, 5), clip=[-1.0, 1.0])
    assert torch.isnan(out[0, 0, 2, 2, 2])
    assert torch.isfinite(out[0, 0, :, :, 4]).all()  # two voxels away: untouched


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_floating_centers(dtype):
    vol = _volume(torch.float32) / 400
    centers = CENTERS.to(dtype) + torch.rand(len(CENTERS), 3, generator=_gen(3)).to(dtype) - 0.5
    theta = _rotations(len(CENTERS), seed=2)
    got = sample_patches3d(vol, centers, theta, SIZE)
    want = reference.sample_patches3d_reference(vol, centers, theta, SIZE)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    # Integer-valued floating centers are integer centers.
    same = sample_patches3d(vol, CENTERS.to(dtype), _identity(len(CENTERS)), SIZE)
    assert torch.equal(same, reference.crop3d_reference(vol, CENTERS, SIZE))


def test_int32_centers_and_float64_theta():
    vol = _volume(torch.int16)
    theta = _rotations(len(CENTERS))
    want = sample_patches3d(vol, CENTERS, theta, SIZE)
    assert torch.equal(sample_patches3d(vol, CENTERS.int(), theta, SIZE), want)
    torch.testing.assert_close(sample_patches3d(vol, CENTERS, theta.double(), SIZE), want, rtol=0, atol=1e-3)


def test_memory_mapped_volume(tmp_path):
    vol = _volume(torch.int16)
    path = tmp_path / "scan.raw"
    vol.numpy().tofile(path)
    mapped = torch.from_numpy(np.memmap(path, dtype=np.int16, mode="c", shape=tuple(vol.shape)))
    theta = _rotations(len(CENTERS))
    assert torch.equal(
        sample_patches3d(mapped, CENTERS, theta, SIZE, clip=[-500, 500]),
        sample_patches3d(vol, CENTERS, theta, SIZE, clip=[-500, 500]),
    )


def test_non_contiguous_volume_and_arguments():
    base = _volume(torch.float32, shape=(28, 24, 20))
    vol = base.permute(2, 1, 0)  # (20, 24, 28), strides reversed
    assert not vol.is_contiguous()
    theta = _rotations(len(CENTERS)).transpose(1, 2).contiguous().transpose(1, 2)
    centers = CENTERS.t().contiguous().t()
    assert not theta.is_contiguous() and not centers.is_contiguous()
    got = sample_patches3d(vol, centers, theta, SIZE, noise_std=2.0, seed=3)
    assert torch.equal(got, sample_patches3d(vol.contiguous(), CENTERS, theta.contiguous(), SIZE, noise_std=2.0, seed=3))


def test_noise_matches_the_reference_generator():
    vol = _volume(torch.int16)
    theta = _rotations(len(CENTERS))
    got = sample_patches3d(vol, CENTERS, theta, SIZE, noise_std=25.0, seed=77)
    want = reference.sample_patches3d_reference(vol, CENTERS, theta, SIZE, noise_std=25.0, seed=77)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=3e-3)
    noise = got - sample_patches3d(vol, CENTERS, theta, SIZE)
    assert 20 < noise.std() < 30


def test_empty_batch():
    out = sample_patches3d(_volume(), torch.zeros(0, 3, dtype=torch.int64), torch.zeros(0, 3, 4), SIZE)
    assert out.shape == (0, 1, *SIZE)


def test_empty_volume_reads_fill():
    vol = torch.zeros(0, 5, 5, dtype=torch.int16)
    out = sample_patches3d(vol, CENTERS[:3], _rotations(3), SIZE, fill=-7.0)
    torch.testing.assert_close(out, torch.full_like(out, -7.0))


def test_wild_thetas_and_centers_never_read_out_of_bounds():
    vol = _volume(torch.float32)
    theta = _rotations(4)
    theta[0, 0, 0] = float("nan")
    theta[1, :, 3] = float("inf")
    theta[2] *= 1e30
    centers = torch.tensor([[10.0, 12, 14], [10, 12, 14], [10, 12, 14], [1e300, -1e300, float("nan")]], dtype=torch.float64)
    out = sample_patches3d(vol, centers, theta, SIZE, fill=-1.0)
    finite = out[torch.isfinite(out)]
    assert finite.numel() > 0 and finite.abs().max() <= vol.abs().max() + 1e-3
    torch.testing.assert_close(out[1:], torch.full_like(out[1:], -1.0))


# --- the two theta conventions ---------------------------------------------------


@pytest.mark.parametrize("size", [(32, 48, 48), (5, 6, 7), (1, 4, 9)])
def test_theta_conversions_round_trip(size):
    theta = torch.randn(6, 3, 4, generator=_gen(0), dtype=torch.float64)
    torch.testing.assert_close(voxel_theta_to_normalized(normalized_theta_to_voxel(theta, size), size), theta)
    torch.testing.assert_close(normalized_theta_to_voxel(voxel_theta_to_normalized(theta, size), size), theta)
    eye = torch.eye(3, 4, dtype=torch.float64)
    torch.testing.assert_close(normalized_theta_to_voxel(eye, size), eye)


@pytest.mark.parametrize("size", [(32, 48, 48), (5, 6, 7), (64, 64), (3, 8)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("batch", [(), (4,), (2, 3)])
def test_numpy_and_torch_conversions_agree(size, dtype, batch):
    # CPU tensors without grad convert in numpy (a Dataset converts one
    # sample at a time); tensors that need grad take the torch formula.
    k = len(size)
    theta = torch.randn(*batch, k, k + 1, generator=_gen(1), dtype=torch.float64).to(dtype)
    fast = normalized_theta_to_voxel(theta, size)
    slow = normalized_theta_to_voxel(theta.clone().requires_grad_(), size)
    assert slow.requires_grad and fast.dtype == dtype and fast.shape == theta.shape
    assert torch.equal(fast, slow.detach())
    torch.testing.assert_close(voxel_theta_to_normalized(fast, size), theta)


@pytest.mark.parametrize("size", [(9, 16, 16), (8, 15, 14)])
def test_crop_then_affine3d_equals_sample_patches3d_inside(size):
    # affine3d(crop3d(...), theta_norm) and sample_patches3d(..., theta_vox)
    # read the same positions; they agree wherever affine3d's source lies
    # inside the cropped patch (elsewhere affine3d pads, sample_patches3d
    # reads the scan).
    vol = _volume(torch.float32, shape=(30, 40, 40)) / 400
    centers = torch.tensor([[15, 20, 20], [12, 18, 22], [16, 21, 19]])
    theta_vox = _rotations(3, seed=4)
    theta_vox[:, :, 3] *= 0.5
    theta_norm = voxel_theta_to_normalized(theta_vox.double(), size).float()
    crops = reference.crop3d_reference(vol, centers, size, fill=0.0)
    via_crop = affine3d(crops, theta_norm, padding="zeros")
    direct = sample_patches3d(vol, centers, theta_vox, size, fill=0.0)
    # Source offsets of every output voxel, in the patch's own index frame.
    grids = torch.meshgrid(*[torch.arange(s, dtype=torch.float64) - s // 2 for s in size], indexing="ij")
    p = torch.stack(grids, -1)
    src = p @ theta_vox[:, :, :3].double().transpose(1, 2)[:, None, None] + theta_vox[:, None, None, None, :, 3].double()
    lo = torch.tensor([-(s // 2) for s in size], dtype=torch.float64)
    hi = torch.tensor([s - 1 - s // 2 for s in size], dtype=torch.float64)
    inside = ((src >= lo) & (src <= hi)).all(-1)[:, None]
    assert inside.float().mean() > 0.3  # a real overlap is compared
    torch.testing.assert_close(via_crop[inside], direct[inside], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(via_crop[~inside], direct[~inside], atol=1e-3)


# --- the PyTorch integration points ----------------------------------------------


def test_opcheck():
    vol = _volume(torch.int16, shape=(8, 9, 10))
    centers = CENTERS[:4] // 2
    for clip, noise in ((None, 0.0), ([-100.0, 100.0], 3.0)):
        torch.library.opcheck(
            torch.ops.torchlite.sample_patches3d, (vol, centers, _rotations(4), [3, 4, 5], -1000.0, clip, noise, 5)
        )


def test_torch_compile_fullgraph():
    def patches(vol, centers, theta):
        return sample_patches3d(vol, centers, theta, (3, 4, 5), clip=[-100.0, 100.0], noise_std=1.0, seed=2) * 0.5

    vol, theta = _volume(torch.int16), _rotations(3)
    compiled = torch.compile(patches, fullgraph=True)
    torch.testing.assert_close(compiled(vol, CENTERS[:3], theta), patches(vol, CENTERS[:3], theta))


def test_torchscript_save_and_load(tmp_path):
    @torch.jit.script
    def patches(vol: torch.Tensor, centers: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        return torch.ops.torchlite.sample_patches3d(vol, centers, theta, [3, 4, 5], -1000.0, [-100.0, 100.0], 1.0, 2)

    vol, theta = _volume(torch.int16), _rotations(3)
    path = tmp_path / "patches.pt"
    torch.jit.save(patches, str(path))
    loaded = torch.jit.load(str(path))
    assert torch.equal(
        loaded(vol, CENTERS[:3], theta),
        sample_patches3d(vol, CENTERS[:3], theta, (3, 4, 5), clip=[-100.0, 100.0], noise_std=1.0, seed=2),
    )


def test_requires_grad_refuses_backward():
    vol = _volume(torch.float32).requires_grad_()
    out = sample_patches3d(vol, CENTERS[:2], _identity(2), SIZE)
    with pytest.raises(RuntimeError, match="not differentiable"):
        out.sum().backward()


# --- bad inputs: every message names the argument ------------------------------


def _call(vol=None, centers=None, theta=None, size=SIZE, **kw):
    vol = _volume(torch.int16) if vol is None else vol
    centers = CENTERS[:2] if centers is None else centers
    theta = _identity(2) if theta is None else theta
    return sample_patches3d(vol, centers, theta, size, **kw)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(vol=torch.zeros(4, 4)), RuntimeError, r"`volume` must be 3-D \(D, H, W\)"),
        (dict(vol=torch.zeros(4, 4, 4, dtype=torch.uint8)), TypeError, r"`volume` must be Short or Float, got Byte"),
        (dict(centers=torch.zeros(2, 2, dtype=torch.int64)), RuntimeError, r"`centers` must have shape \(N, 3\)"),
        (dict(centers=torch.zeros(2, 3, dtype=torch.bool)), TypeError, r"`centers` must be Long or Int or Float or Double"),
        (dict(theta=torch.eye(2, 3).repeat(2, 1, 1)), RuntimeError, r"`theta` must have shape \(N, 3, 4\)"),
        (dict(theta=_identity(3)), RuntimeError, r"`theta` has 3 samples but `centers` has 2"),
        (dict(theta=_identity(2).half()), TypeError, r"`theta` must be Float or Double, got Half"),
        (dict(size=(5, 6)), RuntimeError, r"`size` must have 3 entries"),
        (dict(size=(5, -1, 7)), RuntimeError, r"`size` entries must be positive"),
        (dict(size=(5, 0, 7)), RuntimeError, r"`size` entries must be positive"),
        (dict(clip=[1.0]), ValueError, r"`clip` must be \[lo, hi\]"),
        (dict(clip=[5.0, 1.0]), ValueError, r"`clip` must be \[lo, hi\] with lo <= hi"),
        (dict(noise_std=-1.0), ValueError, r"`noise_std` must be a finite number >= 0"),
        (dict(fill=float("nan")), ValueError, r"`fill` must be finite"),
    ],
)
def test_bad_inputs_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        _call(**kwargs)


def test_device_mismatch_is_named():
    with pytest.raises(RuntimeError, match=r"`centers` is on meta but `volume` is on cpu"):
        _call(centers=CENTERS[:2].to("meta"))
    with pytest.raises(RuntimeError, match=r"`theta` is on meta but `volume` is on cpu"):
        torch.ops.torchlite.sample_patches3d.default.redispatch(
            torch._C.DispatchKeySet(torch._C.DispatchKey.CPU),
            _volume(torch.int16), CENTERS[:2], _identity(2).to("meta"), list(SIZE), -1000.0, None, 0.0, 0,
        )
