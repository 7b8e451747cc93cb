"""Every torchlite operator in plain PyTorch: the book's way of doing it.

These are the independent truth the tests compare the kernels against and
the baselines the benchmarks time them against. They favour clarity over
speed and use only public torch/numpy APIs (slicing, F.affine_grid,
F.grid_sample, composite arithmetic).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# --- crop3d ------------------------------------------------------------------
def crop3d_reference(
    volume: torch.Tensor,
    centers: torch.Tensor,
    size,
    *,
    fill: float = -1000.0,
    clamp: bool = False,
    clip=None,
) -> torch.Tensor:
    """The book's getRawCandidate, one candidate at a time, by slicing.

    For each center (index, row, column) the window starts at
    ``center - size // 2``; with ``clamp`` it is shifted inside the volume
    as the book does. The part of the window inside the volume is sliced
    out, converted to float32, clipped to ``clip`` and copied into an output
    pre-filled with ``fill`` (so the fill is not clipped). Python integers
    do the index arithmetic, so no center can overflow anything here.
    """
    size = [int(s) for s in size]
    dims = list(volume.shape)
    out = torch.full((centers.shape[0], 1, *size), float(fill), dtype=torch.float32, device=volume.device)
    for i, center in enumerate(centers.tolist()):
        src, dst = [], []
        for c, s, dim in zip(center, size, dims):
            start = c - s // 2
            if clamp:
                start = min(max(start, 0), max(dim - s, 0))
            lo, hi = max(start, 0), min(start + s, dim)
            if lo >= hi:
                break  # this axis misses the volume: the whole patch is fill
            src.append(slice(lo, hi))
            dst.append(slice(lo - start, hi - start))
        else:
            chunk = volume[tuple(src)].to(torch.float32)
            if clip is not None:
                chunk = chunk.clamp(float(clip[0]), float(clip[1]))
            out[i, 0][tuple(dst)] = chunk
    return out

# --- affine3d / affine2d / sample_patches3d ----------------------------------
# The counter-based noise of csrc/kernels/noise.h, re-implemented in torch
# integer ops (int64 tensors holding uint32 values) and float64 math, so the
# kernels' polynomial log/sin/cos and their Philox are checked against an
# independent computation.
_PHILOX_M0, _PHILOX_M1 = 0xD2511F53, 0xCD9E8D57
_PHILOX_W0, _PHILOX_W1 = 0x9E3779B9, 0xBB67AE85
_MASK32 = 0xFFFFFFFF


def _mulhilo32(a: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    # a * m < 2^64 overflows int64, so multiply 16-bit halves (< 2^48 each).
    p_lo = (a & 0xFFFF) * m
    p_hi = (a >> 16) * m
    s = p_lo + ((p_hi & 0xFFFF) << 16)
    return ((p_hi >> 16) + (s >> 32)) & _MASK32, s & _MASK32


def philox4x32_10_reference(counter: list[torch.Tensor], key: tuple[int, int]) -> list[torch.Tensor]:
    """Philox4x32-10 (Salmon et al. 2011) on four int64 tensors of uint32 counter words."""
    c0, c1, c2, c3 = (c.to(torch.int64) & _MASK32 for c in counter)
    k0, k1 = key[0] & _MASK32, key[1] & _MASK32
    for _ in range(10):
        hi0, lo0 = _mulhilo32(c0, _PHILOX_M0)
        hi1, lo1 = _mulhilo32(c2, _PHILOX_M1)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0, k1 = (k0 + _PHILOX_W0) & _MASK32, (k1 + _PHILOX_W1) & _MASK32
    return [c0, c1, c2, c3]


def _box_muller_reference(w_radius: torch.Tensor, w_angle: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    u = ((w_radius >> 9).to(torch.float64) + 0.5) / 2.0**23
    r = torch.sqrt(-2.0 * torch.log(u))
    quadrant = (w_angle >> 30).to(torch.float64)
    phi = ((((w_angle >> 7) & 0x7FFFFF).to(torch.float64) + 0.5) / 2.0**23 - 0.5) * (torch.pi / 2)
    angle = quadrant * (torch.pi / 2) + phi
    return r * torch.cos(angle), r * torch.sin(angle)


def philox_normal_reference(numel: int, seed: int, device=None) -> torch.Tensor:
    """The N(0,1) noise of flat elements 0 .. numel-1 for ``seed``, float64.

    Element e = 4g + j takes word pair j // 2 of Philox4x32-10 with counter
    (g mod 2^32, g >> 32, 0, 0) and key (seed mod 2^32, seed >> 32 mod 2^32),
    through Box-Muller (cos for even j, sin for odd j).
    """
    groups = (numel + 3) // 4
    g = torch.arange(groups, dtype=torch.int64, device=device)
    zero = torch.zeros_like(g)
    w = philox4x32_10_reference([g & _MASK32, g >> 32, zero, zero], (seed & _MASK32, (seed >> 32) & _MASK32))
    z0, z1 = _box_muller_reference(w[0], w[1])
    z2, z3 = _box_muller_reference(w[2], w[3])
    return torch.stack([z0, z1, z2, z3], dim=1).reshape(-1)[:numel]


def _add_reference_noise(out: torch.Tensor, noise_std: float, seed: int) -> torch.Tensor:
    if noise_std == 0:
        return out
    noise = philox_normal_reference(out.numel(), seed, out.device).reshape(out.shape)
    return (out.to(torch.float64) + noise_std * noise).to(out.dtype)


def _affine_reference(input, theta, padding, fill, noise_std, seed):
    if padding not in ("border", "zeros", "fill"):
        raise ValueError(f"padding must be border, zeros or fill, got {padding!r}")
    x = input.to(torch.float32) if input.dtype in (torch.float16, torch.bfloat16) else input
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    if padding == "fill":
        # grid_sample has no constant padding: shift so the constant is 0.
        out = F.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + fill
    else:
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=False)
    return _add_reference_noise(out, noise_std, seed).to(input.dtype)


def affine3d_reference(input, theta, *, padding="border", fill=0.0, noise_std=0.0, seed=0) -> torch.Tensor:
    """F.affine_grid + F.grid_sample (trilinear, align_corners=False) + noise: the book's augmentation."""
    return _affine_reference(input, theta, padding, fill, noise_std, seed)


def affine2d_reference(input, theta, *, padding="border", fill=0.0, noise_std=0.0, seed=0) -> torch.Tensor:
    """The 2-D twin of :func:`affine3d_reference` (bilinear)."""
    return _affine_reference(input, theta, padding, fill, noise_std, seed)


def affine3d_per_sample_reference(input, theta, *, padding="border", noise_std=0.0) -> torch.Tensor:
    """The book's Dataset way: one affine_grid + grid_sample per sample, torch.randn noise."""
    outs = []
    for i in range(input.shape[0]):
        x = input[i : i + 1]
        grid = F.affine_grid(theta[i : i + 1], list(x.shape), align_corners=False)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=False)
        if noise_std:
            out = out + torch.randn_like(out) * noise_std
        outs.append(out)
    return torch.cat(outs)


def sample_patches3d_reference(
    volume, centers, theta, size, *, fill=-1000.0, clip=None, noise_std=0.0, seed=0
) -> torch.Tensor:
    """Patch by patch: the voxel positions center + A p + t are computed
    explicitly (float64), the window of the volume around them is sliced
    out (clipped, padded with ``fill``) and F.grid_sample interpolates it."""
    size = [int(s) for s in size]
    dev = volume.device
    offsets = torch.stack(
        torch.meshgrid(*[torch.arange(s, dtype=torch.float64, device=dev) - s // 2 for s in size], indexing="ij"),
        dim=-1,
    )  # (d, h, w, 3) IRC offsets p
    out = torch.empty((centers.shape[0], 1, *size), dtype=torch.float32, device=dev)
    for i in range(centers.shape[0]):
        a = theta[i, :, :3].to(torch.float64)
        pos = offsets @ a.T + theta[i, :, 3].to(torch.float64) + centers[i].to(torch.float64)
        lo = torch.floor(pos.reshape(-1, 3).min(0).values).to(torch.int64).tolist()
        hi = (torch.floor(pos.reshape(-1, 3).max(0).values).to(torch.int64) + 1).tolist()
        window = torch.full([h - l + 1 for l, h in zip(lo, hi)], float(fill), dtype=torch.float64, device=dev)
        src, dst = [], []
        for l, h, dim in zip(lo, hi, volume.shape):
            a0, a1 = max(l, 0), min(h + 1, dim)
            src.append(slice(a0, max(a0, a1)))
            dst.append(slice(a0 - l, max(a0, a1) - l))
        chunk = volume[tuple(src)].to(torch.float64)
        if clip is not None:
            chunk = chunk.clamp(float(clip[0]), float(clip[1]))
        window[tuple(dst)] = chunk
        # grid_sample wants (x, y, z) = (W, H, D) normalized, align_corners=False.
        shape = torch.tensor(window.shape, dtype=torch.float64, device=dev)
        norm = (2 * (pos - torch.tensor(lo, dtype=torch.float64, device=dev)) + 1) / shape - 1
        grid = norm.flip(-1)[None]
        sampled = F.grid_sample(
            (window - fill)[None, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )
        out[i] = (sampled[0] + fill).to(torch.float32)
    return _add_reference_noise(out, noise_std, seed)

# --- dice_loss ----------------------------------------------------------------
def _book_dice(prediction: torch.Tensor, label: torch.Tensor, epsilon: float) -> torch.Tensor:
    # The book's SegmentationTrainingApp.diceLoss, generalised from its
    # (N,1,H,W) sum dims to every dimension but the batch one.
    dims = list(range(1, prediction.dim()))

    def per_sample_sum(t: torch.Tensor) -> torch.Tensor:
        # sum(dim=[]) would reduce everything; a 1-D batch has one element per sample.
        return t.sum(dim=dims) if dims else t

    dice_label = per_sample_sum(label)
    dice_prediction = per_sample_sum(prediction)
    dice_correct = per_sample_sum(prediction * label)
    dice_ratio = (2 * dice_correct + epsilon) / (dice_prediction + dice_label + epsilon)
    return 1 - dice_ratio


def dice_loss_reference(
    pred: torch.Tensor, label: torch.Tensor, *, eps: float = 1.0, fn_weight: float = 0.0
) -> torch.Tensor:
    """Per-sample soft Dice loss (N,), the book's composite.

    With ``fn_weight = w`` it adds the book's false-negative (recall) term,
    ``w * dice(pred * label, label)``: ``diceLoss(p, l).mean() + 8 * fnLoss.mean()``
    is ``dice_loss_reference(p, l, fn_weight=8).mean()``. Bool labels are
    used as the book uses them (``prediction * label``, type promotion decides
    the dtype).
    """
    loss = _book_dice(pred, label, eps)
    if fn_weight != 0.0:
        loss = loss + fn_weight * _book_dice(pred * label, label, eps)
    return loss
