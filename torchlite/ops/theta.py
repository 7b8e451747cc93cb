"""Conversions between the two affine conventions of the operators.

``affine3d`` takes ``F.affine_grid`` thetas: *normalized* coordinates
(-1 and +1 at the outer edges of the first and last voxels,
align_corners=False) in (x, y, z) = (W, H, D) order. ``sample_patches3d``
takes *voxel* thetas: offsets in voxels from the patch center, in
(index, row, column) = (D, H, W) order. For a patch of ``size`` voxels the
two describe the same resampling when

    affine3d(crop3d(volume, centers, size), theta_norm)
        ~= sample_patches3d(volume, centers, theta_vox, size)

(equal wherever the cropped patch holds every voxel the sampling reads;
near the patch borders affine3d pads while sample_patches3d reads the real
scan beyond the crop).

The math, per axis a of S_a voxels (xyz order): voxel index k, patch offset
p = k - S_a // 2 and normalized coordinate u are related by

    u = (2k + 1) / S_a - 1 = (2 / S_a) p + c_a,   c_a = (2 (S_a // 2) + 1 - S_a) / S_a

(c_a = 0 for odd S_a, 1 / S_a for even). With D = diag(2 / S_a) and
theta_norm = [A_n | t_n], u_src = A_n u_out + t_n becomes

    p_src = (D^-1 A_n D) p_out + D^-1 (A_n c + t_n - c),

i.e. A_v = D^-1 A_n D and t_v = D^-1 (A_n c + t_n - c) in xyz order, then
both reversed to IRC order. The inverse: A_n = D A_v D^-1,
t_n = D t_v + c - A_n c. Works for 2-D thetas ((..., 2, 3), size (h, w))
too, and for any leading batch dimensions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["normalized_theta_to_voxel", "voxel_theta_to_normalized"]


def _checked(theta: torch.Tensor, size: Sequence[int]) -> tuple[int, list[int]]:
    """(K, the sizes in xyz order) after checking theta's shape against size."""
    k = theta.shape[-2]
    if theta.dim() < 2 or theta.shape[-1] != k + 1:
        raise ValueError(f"theta must have shape (..., K, K+1), got {tuple(theta.shape)}")
    size = [int(s) for s in size]
    if len(size) != k or any(s <= 0 for s in size):
        raise ValueError(f"size must hold {k} positive sizes (index order), got {size}")
    return k, size[::-1]


def _axis_terms(theta: torch.Tensor, size: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, int]:
    k, xyz = _checked(theta, size)
    dtype = theta.dtype if theta.is_floating_point() else torch.float64
    scale = torch.tensor([2.0 / s for s in xyz], dtype=dtype, device=theta.device)
    center = torch.tensor([(2 * (s // 2) + 1 - s) / s for s in xyz], dtype=dtype, device=theta.device)
    return scale, center, k


def _reverse(m: torch.Tensor) -> torch.Tensor:
    # xyz <-> IRC: reverse rows and the first K columns, keep the translation last.
    k = m.shape[-2]
    lin = m[..., :k].flip(-1).flip(-2)
    t = m[..., k:].flip(-2)
    return torch.cat([lin, t], dim=-1)


def _numpy_will_do(theta: torch.Tensor) -> bool:
    return theta.device.type == "cpu" and not theta.requires_grad and theta.is_floating_point()


def _normalized_theta_to_voxel_numpy(theta_norm: np.ndarray, k: int, xyz: list[int]) -> np.ndarray:
    # The torch formula below, for one sample at a time in a Dataset: numpy's
    # calls on 3x4 arrays cost ~1 us, torch's ~4 us (a tenth of the crop).
    scale = np.array([2.0 / s for s in xyz], dtype=theta_norm.dtype)
    c = np.array([(2 * (s // 2) + 1 - s) / s for s in xyz], dtype=theta_norm.dtype)
    a_n, t_n = theta_norm[..., :k], theta_norm[..., k]
    out = np.empty_like(theta_norm)
    out[..., :k] = a_n * scale[None, :] / scale[:, None]
    out[..., k] = ((a_n @ c) + t_n - c) / scale
    rev = list(range(k - 1, -1, -1))  # xyz -> IRC: rows and the linear columns reversed
    return np.ascontiguousarray(out[..., rev, :][..., rev + [k]])


def normalized_theta_to_voxel(theta_norm: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """affine3d theta (..., 3, 4), normalized xyz -> sample_patches3d theta, voxels IRC.

    ``size`` is the patch size in index order, (d, h, w) (or (h, w) in 2-D).
    """
    if _numpy_will_do(theta_norm):
        k, xyz = _checked(theta_norm, size)
        return torch.from_numpy(_normalized_theta_to_voxel_numpy(theta_norm.numpy(), k, xyz))
    scale, c, k = _axis_terms(theta_norm, size)
    a_n, t_n = theta_norm[..., :k], theta_norm[..., k]
    a_v = a_n * scale[None, :] / scale[:, None]  # D^-1 A D
    t_v = ((a_n @ c) + t_n - c) / scale
    return _reverse(torch.cat([a_v, t_v[..., None]], dim=-1))


def voxel_theta_to_normalized(theta_vox: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """sample_patches3d theta (..., 3, 4), voxels IRC -> affine3d theta, normalized xyz."""
    scale, c, k = _axis_terms(theta_vox, size)
    m = _reverse(theta_vox)
    a_v, t_v = m[..., :k], m[..., k]
    a_n = a_v * scale[:, None] / scale[None, :]  # D A D^-1
    t_n = scale * t_v + c - a_n @ c
    return torch.cat([a_n, t_n[..., None]], dim=-1)
