"""Affine resampling with Gaussian noise: ``affine3d`` and ``affine2d``.

One fused pass equal to the book's augmentation (chapter 12 / 13)::

    grid = F.affine_grid(theta, x.shape, align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=False)
    out = out + noise_std * torch.randn_like(out)

without materializing the sampling grid, and with noise from a counter-based
generator (Philox4x32-10 + Box-Muller, csrc/kernels/noise.h): the noise of
output element ``e`` (flat index into the contiguous output) is a pure
function of ``(seed, e)``, so a seed reproduces the same noise on CPU and
CUDA, with any number of threads. ``torchlite.ops.reference`` holds the
plain-PyTorch equivalent (including the generator, in torch integer ops).

Not differentiable: augmentation acts on data, so no backward exists. Calling
the operators on tensors that require grad works (the output requires grad
too), and a backward through them raises instead of silently returning a
wrong or zero gradient.
"""

from __future__ import annotations

import torch

from torchlite.ops import _library

_library.load()

PADDING_MODES = ("border", "zeros", "fill")


def affine3d(
    input: torch.Tensor,
    theta: torch.Tensor,
    *,
    padding: str = "border",
    fill: float = 0.0,
    noise_std: float = 0.0,
    seed: int = 0,
) -> torch.Tensor:
    """Resample ``input`` (N, C, D, H, W) through ``theta`` (N, 3, 4), add noise.

    ``theta`` follows ``F.affine_grid`` (normalized coordinates in [-1, 1],
    align_corners=False, columns in x, y, z = W, H, D order): output voxel
    at normalized position ``p`` reads the input at ``theta @ [p, 1]``,
    trilinearly. ``padding``: ``"border"`` repeats the edge voxels,
    ``"zeros"`` reads 0 outside, ``"fill"`` reads ``fill`` outside (per
    interpolation corner, i.e. ``grid_sample(x - fill, zeros) + fill``).
    Then ``noise_std * N(0, 1)`` is added to every output element, the noise
    drawn from ``seed`` (``noise_std=0`` adds none). input float32, float16
    or bfloat16 (math in float32); theta float32 or float64. Returns a new
    contiguous tensor of the input's shape and dtype.
    """
    return torch.ops.torchlite.affine3d(input, theta, padding, fill, noise_std, seed)


def affine2d(
    input: torch.Tensor,
    theta: torch.Tensor,
    *,
    padding: str = "border",
    fill: float = 0.0,
    noise_std: float = 0.0,
    seed: int = 0,
) -> torch.Tensor:
    """:func:`affine3d` for images: ``input`` (N, C, H, W), ``theta`` (N, 2, 3), bilinear."""
    return torch.ops.torchlite.affine2d(input, theta, padding, fill, noise_std, seed)


def _fake(op: str, k: int):
    def fake(input, theta, padding="border", fill=0.0, noise_std=0.0, seed=0):
        torch._check(input.dim() == k + 2, lambda: f"torchlite.{op}: `input` must be {k + 2}-D, got {input.dim()}-D")
        torch._check(
            theta.dim() == 3 and theta.shape[1] == k and theta.shape[2] == k + 1,
            lambda: f"torchlite.{op}: `theta` must have shape (N, {k}, {k + 1}), got {tuple(theta.shape)}",
        )
        torch._check(
            theta.shape[0] == input.shape[0],
            lambda: f"torchlite.{op}: `theta` has {theta.shape[0]} samples but `input` has {input.shape[0]}",
        )
        torch._check(
            theta.device == input.device,
            lambda: f"torchlite.{op}: `theta` is on {theta.device} but `input` is on {input.device}; "
            "move both to the same device",
        )
        torch._check(padding in PADDING_MODES, lambda: f"torchlite.{op}: `padding` must be one of {PADDING_MODES}")
        return input.new_empty(input.shape)

    return fake


def _no_backward(op: str):
    def backward(ctx, grad):
        raise RuntimeError(
            f"torchlite.{op} is not differentiable (it augments data); detach its input, "
            "or use F.affine_grid + F.grid_sample where a gradient is needed"
        )

    return backward


for _op, _k in (("affine3d", 3), ("affine2d", 2)):
    torch.library.register_fake(f"torchlite::{_op}")(_fake(_op, _k))
    torch.library.register_autograd(f"torchlite::{_op}", _no_backward(_op))
