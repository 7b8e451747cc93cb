"""affine3d / affine2d against F.affine_grid + F.grid_sample (the reference)."""

import math

import pytest
import torch
import torch.nn.functional as F

from torchlite.ops import reference
from torchlite.ops.affine import affine2d, affine3d

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
PADDINGS = ["border", "zeros", "fill"]
OPS = {3: (affine3d, reference.affine3d_reference), 2: (affine2d, reference.affine2d_reference)}


def _gen(seed):
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def _input(dims, n=3, c=2, size=None, seed=0):
    size = size or ((5, 7, 9) if dims == 3 else (11, 13))
    return torch.randn(n, c, *size, generator=_gen(seed))


def _random_theta(dims, n, seed=0, spread=0.6):
    # Around the identity with large rotations/shears and offsets, so that
    # every padding path (inside, partly and fully outside) is exercised.
    theta = torch.eye(dims, dims + 1).repeat(n, 1, 1)
    return theta + spread * torch.randn(n, dims, dims + 1, generator=_gen(seed + 100))


def _book_theta(n, seed=0):
    """The book's augmentation: flips, offset 0.1, scale 0.2, rotation about the index axis."""
    g = _gen(seed)
    diag = torch.where(torch.rand(n, 3, generator=g) > 0.5, -1.0, 1.0) * (1 + 0.2 * (torch.rand(n, 3, generator=g) * 2 - 1))
    angle = torch.rand(n, generator=g) * 2 * math.pi
    rot = torch.eye(3).repeat(n, 1, 1)
    rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1] = angle.cos(), -angle.sin(), angle.sin(), angle.cos()
    theta = torch.zeros(n, 3, 4)
    theta[:, :, :3] = torch.diag_embed(diag) @ rot
    theta[:, :, 3] = 0.1 * (torch.rand(n, 3, generator=g) * 2 - 1)
    return theta


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("dims", [3, 2])
def test_random_thetas_match_grid_sample(dims, padding, device):
    op, ref = OPS[dims]
    x = _input(dims).to(device)
    theta = _random_theta(dims, x.shape[0]).to(device)
    got = op(x, theta, padding=padding, fill=-1.5)
    want = ref(x, theta, padding=padding, fill=-1.5)
    assert got.shape == x.shape and got.dtype == x.dtype and got.is_contiguous()
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("padding", PADDINGS)
def test_book_thetas_match_grid_sample(padding):
    x = torch.randn(4, 1, 8, 12, 12, generator=_gen(1)) * 300
    theta = _book_theta(4)
    got = affine3d(x, theta, padding=padding, fill=-1000.0)
    # HU-scale data: float32 grid_sample itself is off by ~1e-3 here, so the
    # truth is the reference in float64 (the kernel is within ~1e-4 of it).
    truth = reference.affine3d_reference(x.double(), theta.double(), padding=padding, fill=-1000.0)
    torch.testing.assert_close(got, truth.float(), rtol=0, atol=5e-4)
    torch.testing.assert_close(got, reference.affine3d_reference(x, theta, padding=padding, fill=-1000.0), rtol=0, atol=1e-2)


@pytest.mark.parametrize("padding", PADDINGS)
def test_plane_path_equals_voxel_path(padding):
    # Thetas whose z row is (s, 0, 0 | t) take the CPU's plane path (two
    # source planes blended once per output plane); a 1e-12 in-plane z term
    # sends the same resampling through the per-voxel path.
    x = torch.randn(4, 2, 9, 14, 15, generator=_gen(2))
    theta = _book_theta(4, seed=5)
    nudged = theta.double().clone()
    nudged[:, 2, 0] = 1e-12
    plane = affine3d(x, theta, padding=padding, fill=0.5, noise_std=0.1, seed=1)
    voxel = affine3d(x, nudged, padding=padding, fill=0.5, noise_std=0.1, seed=1)
    torch.testing.assert_close(plane, voxel, rtol=0, atol=1e-5)


@pytest.mark.parametrize("padding", PADDINGS)
def test_plane_path_equals_voxel_path_at_and_beyond_the_edges(padding):
    # The plane path reads every sample's upper corners at +1 into a ring of
    # pad voxels (with weight 0 at a clamped border edge; both corners pad
    # beyond a zeros/fill edge) where the per-voxel path clamps the corner.
    # Same values, for inf and NaN voxels on the edges too, and for positions
    # far beyond every edge.
    x = torch.randn(3, 1, 6, 9, 10, generator=_gen(6))
    x[0, 0, :, -1, :] = float("inf")  # the last row
    x[1, 0, :, :, 0] = float("nan")  # the first column
    x[2, 0, :, :, -1] = -float("inf")  # the last column
    theta = _book_theta(3, seed=7).double()
    theta[:, :2, :2] *= 2.5  # zoomed out: many positions beyond the edges
    theta[0, 0, 3], theta[1, 1, 3] = 1.7, -1.9
    nudged = theta.clone()
    nudged[:, 2, 0] = 1e-12
    plane = affine3d(x, theta, padding=padding, fill=0.5)
    voxel = affine3d(x, nudged, padding=padding, fill=0.5)
    assert not torch.isfinite(plane).all()  # the edges were read
    torch.testing.assert_close(plane, voxel, rtol=0, atol=1e-5, equal_nan=True)


def test_large_planes_are_tiled():
    # Output planes beyond 2^16 voxels are split into tiles (for threads)
    # instead of taking the plane path: same result.
    x = torch.randn(1, 1, 2, 260, 270, generator=_gen(4))
    theta = _book_theta(1, seed=2)
    got = affine3d(x, theta, padding="zeros", noise_std=1.0, seed=4)
    torch.testing.assert_close(got, reference.affine3d_reference(x, theta, padding="zeros", noise_std=1.0, seed=4), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dims", [3, 2])
def test_identity_is_a_copy(dims):
    op, _ = OPS[dims]
    x = _input(dims)
    theta = torch.eye(dims, dims + 1).expand(x.shape[0], dims, dims + 1)
    for padding in PADDINGS:
        torch.testing.assert_close(op(x, theta, padding=padding), x, rtol=0, atol=1e-6)


def test_translation_by_one_voxel_shifts():
    # +2/W in normalized x is one voxel: out[..., k] = x[..., k+1]; the last
    # column reads past the edge (border repeats it, zeros gives 0).
    x = _input(3)
    theta = torch.eye(3, 4).repeat(x.shape[0], 1, 1)
    theta[:, 0, 3] = 2.0 / x.shape[-1]
    out = affine3d(x, theta, padding="border")
    torch.testing.assert_close(out[..., :-1], x[..., 1:], rtol=0, atol=1e-5)
    torch.testing.assert_close(out[..., -1], x[..., -1], rtol=0, atol=1e-5)
    out = affine3d(x, theta, padding="zeros")
    torch.testing.assert_close(out[..., -1], torch.zeros_like(x[..., -1]), rtol=0, atol=1e-5)
    out = affine3d(x, theta, padding="fill", fill=7.0)
    torch.testing.assert_close(out[..., -1], torch.full_like(x[..., -1], 7.0), rtol=0, atol=1e-5)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_flips_reverse_one_axis(axis):
    x = _input(3)
    theta = torch.eye(3, 4).repeat(x.shape[0], 1, 1)
    theta[:, axis, axis] = -1.0  # theta row 0 is x (W, the last dim)
    torch.testing.assert_close(affine3d(x, theta), x.flip(4 - axis), rtol=0, atol=1e-5)


def test_flip_2d():
    x = _input(2)
    theta = torch.tensor([[-1.0, 0, 0], [0, -1.0, 0]]).expand(x.shape[0], 2, 3)
    torch.testing.assert_close(affine2d(x, theta), x.flip(-1, -2), rtol=0, atol=1e-5)


@pytest.mark.parametrize("dims", [3, 2])
def test_channels_share_the_geometry(dims):
    op, _ = OPS[dims]
    x = _input(dims, n=2, c=5)
    theta = _random_theta(dims, 2, seed=3)
    out = op(x, theta, padding="zeros")
    for c in range(5):
        torch.testing.assert_close(out[:, c : c + 1], op(x[:, c : c + 1].contiguous(), theta, padding="zeros"))


@pytest.mark.parametrize("dims", [3, 2])
def test_non_contiguous_input_and_theta(dims):
    op, ref = OPS[dims]
    big = _input(dims, n=3, c=4, size=(6, 8, 10) if dims == 3 else (12, 14))
    x = big[:, ::2].transpose(-1, -2)  # strided channels, swapped spatial axes
    assert not x.is_contiguous()
    theta = _random_theta(dims, 3).transpose(1, 2).contiguous().transpose(1, 2)
    assert not theta.is_contiguous()
    for padding in PADDINGS:
        got = op(x, theta, padding=padding, fill=2.0, noise_std=0.5, seed=9)
        torch.testing.assert_close(got, op(x.contiguous(), theta.contiguous(), padding=padding, fill=2.0, noise_std=0.5, seed=9))
        torch.testing.assert_close(got, ref(x, theta, padding=padding, fill=2.0, noise_std=0.5, seed=9), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dims", [3, 2])
def test_float64_theta(dims):
    op, ref = OPS[dims]
    x = _input(dims)
    theta = _random_theta(dims, x.shape[0]).double()
    torch.testing.assert_close(op(x, theta), ref(x, theta.float()), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype,tol", [(torch.float16, 2e-3), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("dims,book", [(3, False), (3, True), (2, False)])  # book: the CPU plane path
def test_half_precision_inputs(dims, book, dtype, tol):
    # Math in float32; the only extra error is the final rounding to dtype.
    op, ref = OPS[dims]
    x = _input(dims).to(dtype)
    theta = _book_theta(x.shape[0]) if book else _random_theta(dims, x.shape[0])
    got = op(x, theta, padding="zeros")
    assert got.dtype == dtype
    want = ref(x.float(), theta, padding="zeros")
    torch.testing.assert_close(got.float(), want, rtol=tol, atol=tol)


@pytest.mark.parametrize("n", [0, 1])
@pytest.mark.parametrize("dims", [3, 2])
def test_batch_zero_and_one(dims, n):
    op, ref = OPS[dims]
    x = _input(dims, n=n)
    theta = _random_theta(dims, n)
    got = op(x, theta, noise_std=1.0, seed=2)
    assert got.shape == x.shape
    if n == 0:
        return  # F.affine_grid refuses an empty batch; the operator returns one
    torch.testing.assert_close(got, ref(x, theta, noise_std=1.0, seed=2), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape", [(2, 0, 4, 5, 6), (2, 1, 0, 5, 6), (2, 1, 4, 5, 0)])
def test_empty_inputs_give_empty_outputs(shape):
    x = torch.randn(shape)
    out = affine3d(x, torch.eye(3, 4).expand(2, 3, 4), noise_std=1.0)
    assert out.shape == x.shape


@pytest.mark.parametrize("dims", [3, 2])
def test_noise_matches_the_reference_generator(dims):
    op, ref = OPS[dims]
    x = _input(dims)
    theta = _random_theta(dims, x.shape[0])
    got = op(x, theta, padding="zeros", noise_std=25.0, seed=1234)
    want = ref(x, theta, padding="zeros", noise_std=25.0, seed=1234)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=5e-4)


def test_single_thread_gives_the_same_result():
    x = torch.randn(4, 2, 9, 40, 41)
    theta = _book_theta(4)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = affine3d(x, theta, noise_std=3.0, seed=5)
        torch.set_num_threads(max(2, before))
        many = affine3d(x, theta, noise_std=3.0, seed=5)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, many)


@pytest.mark.parametrize("dims", [3, 2])
def test_wild_thetas_never_read_out_of_bounds(dims):
    # NaN, inf and huge entries: positions are clamped before indexing, so
    # the kernel stays inside the input (border output is a value of the
    # input; zeros/fill output is the pad value or an interpolation of it).
    op, _ = OPS[dims]
    x = _input(dims, n=4).abs() + 1  # all values in [1, inf)
    theta = _random_theta(dims, 4)
    theta[0, 0, 0] = float("nan")
    theta[1, :, -1] = float("inf")
    theta[2] *= 1e30
    theta[3, :, -1] = -1e12
    out = op(x, theta, padding="border")
    finite = out[torch.isfinite(out)]
    assert finite.numel() > 0 and finite.min() >= x.min() - 1e-4 and finite.max() <= x.max() + 1e-4
    out = op(x[1:], theta[1:], padding="fill", fill=-5.0)  # the finite-but-absurd thetas read only outside
    torch.testing.assert_close(out, torch.full_like(out, -5.0))


def test_requires_grad_input_works_forward_and_refuses_backward():
    x = torch.randn(2, 1, 4, 5, 6, requires_grad=True)
    out = affine3d(x, torch.eye(3, 4).expand(2, 3, 4))
    torch.testing.assert_close(out, x.detach(), rtol=0, atol=1e-6)
    with pytest.raises(RuntimeError, match="not differentiable"):
        out.sum().backward()


@pytest.mark.parametrize("dims", [3, 2])
def test_opcheck(dims):
    op = torch.ops.torchlite.affine3d if dims == 3 else torch.ops.torchlite.affine2d
    x = _input(dims, n=2, c=1)
    theta = _random_theta(dims, 2)
    for padding, noise in (("border", 0.0), ("fill", 2.0)):
        torch.library.opcheck(op, (x, theta, padding, 1.0, noise, 7))


def test_torch_compile_fullgraph():
    def augment(x, theta):
        return affine3d(x * 2.0, theta, padding="zeros", noise_std=1.0, seed=3) + 1.0

    x = _input(3, n=2, c=1)
    theta = _random_theta(3, 2)
    compiled = torch.compile(augment, fullgraph=True)
    torch.testing.assert_close(compiled(x, theta), augment(x, theta))


def test_torchscript_save_and_load(tmp_path):
    @torch.jit.script
    def augment(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        return torch.ops.torchlite.affine3d(x, theta, "fill", -1.0, 0.5, 11)

    x = _input(3, n=2, c=1)
    theta = _random_theta(3, 2)
    path = tmp_path / "augment.pt"
    torch.jit.save(augment, str(path))
    loaded = torch.jit.load(str(path))
    torch.testing.assert_close(loaded(x, theta), affine3d(x, theta, padding="fill", fill=-1.0, noise_std=0.5, seed=11))


# --- bad inputs: every message names the argument ------------------------------


def _x3():
    return torch.randn(2, 1, 4, 5, 6)


def _t3(n=2):
    return torch.eye(3, 4).repeat(n, 1, 1)


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda: affine3d(_x3(), torch.eye(2, 3).repeat(2, 1, 1)), RuntimeError, r"`theta` must have shape \(N, 3, 4\)"),
        (lambda: affine3d(_x3(), _t3(3)), RuntimeError, r"`theta` has 3 samples but `input` has 2"),
        (lambda: affine3d(_x3(), _t3(), padding="reflect"), ValueError, r"`padding` must be one of \"border\", \"zeros\", \"fill\", got \"reflect\""),
        (lambda: affine3d(_x3(), _t3(), noise_std=-1.0), ValueError, r"`noise_std` must be a finite number >= 0"),
        (lambda: affine3d(_x3(), _t3(), noise_std=float("nan")), ValueError, r"`noise_std`"),
        (lambda: affine3d(_x3(), _t3(), padding="fill", fill=float("inf")), ValueError, r"`fill` must be finite"),
        (lambda: affine3d(_x3().double(), _t3()), TypeError, r"`input` must be Float or Half or BFloat16, got Double"),
        (lambda: affine3d(_x3().to(torch.int16), _t3()), TypeError, r"`input` must be Float"),
        (lambda: affine3d(_x3(), _t3().half()), TypeError, r"`theta` must be Float or Double, got Half"),
        (lambda: affine3d(_x3()[0], _t3()), RuntimeError, r"`input` must be 5-D \(N, C, D, H, W\)"),
        (lambda: affine3d(_x3(), _t3()[0]), RuntimeError, r"`theta` must be 3-D"),
        (lambda: affine2d(_x3(), torch.eye(2, 3).repeat(2, 1, 1)), RuntimeError, r"affine2d: `input` must be 4-D \(N, C, H, W\)"),
        (lambda: affine2d(_x3()[:, 0], _t3()), RuntimeError, r"affine2d: `theta` must have shape \(N, 2, 3\)"),
    ],
)
def test_bad_inputs_are_named(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_device_mismatch_is_named():
    # A meta tensor routes the call to the fake kernel, a CPU one (through
    # redispatch) to the C++ kernel: both name the argument.
    with pytest.raises(RuntimeError, match=r"`theta` is on meta but `input` is on cpu"):
        affine3d(_x3(), _t3().to("meta"))
    with pytest.raises(RuntimeError, match=r"`theta` is on meta but `input` is on cpu"):
        torch.ops.torchlite.affine3d.default.redispatch(
            torch._C.DispatchKeySet(torch._C.DispatchKey.CPU), _x3(), _t3().to("meta"), "border", 0.0, 0.0, 0
        )
