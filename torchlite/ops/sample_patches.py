"""``sample_patches3d``: crop, affine-resample, clip and add noise in one pass.

The book crops a candidate's patch from the scan, then augments the patch
(affine_grid + grid_sample + noise). Rotating an already-cropped patch has
to invent its corners (grid_sample repeats the edge voxels); sampling the
rotated patch straight from the scan reads the real tissue there, and does
the crop and the augmentation in one pass over the output.

Geometry, all in voxel units and IRC (index, row, column) = (D, H, W)
order: output voxel ``k`` (``0 <= k < size`` per axis) has offset
``p = k - size // 2`` from the patch center and reads the volume at
``center + A @ p + t``, where ``theta = [A | t]`` is (N, 3, 4). Identity
theta and integer centers reproduce ``crop3d`` exactly. Use
:mod:`torchlite.ops.theta` to convert from/to ``affine3d``'s normalized
(``F.affine_grid``) convention.

Not differentiable (see :mod:`torchlite.ops.affine`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from torchlite.ops import _library

_library.load()


def sample_patches3d(
    volume: torch.Tensor,
    centers: torch.Tensor,
    theta: torch.Tensor,
    size: Sequence[int],
    *,
    fill: float = -1000.0,
    clip: Sequence[float] | None = None,
    noise_std: float = 0.0,
    seed: int = 0,
) -> torch.Tensor:
    """Sample N patches of ``size`` (d, h, w) from ``volume`` (D, H, W).

    volume: int16 or float32, any strides (a memory-mapped scan is read in
    place). centers: (N, 3) IRC, int64 (or int32) or floating (sub-voxel
    centers interpolate). theta: (N, 3, 4) float32/float64 ``[A | t]`` in
    voxel units, IRC order. Trilinear; each interpolation corner outside the
    volume reads ``fill`` (-1000 HU: air); ``clip=(lo, hi)`` clamps voxel
    values as they are read (before interpolation; ``fill`` is not clipped);
    then ``noise_std * N(0, 1)`` counter-based noise from ``seed`` is added
    (the same generator and element indexing as ``affine3d``). Returns
    (N, 1, d, h, w) float32.
    """
    clip_list = None if clip is None else [float(v) for v in clip]
    return torch.ops.torchlite.sample_patches3d(
        volume, centers, theta, [int(s) for s in size], fill, clip_list, noise_std, seed
    )


@torch.library.register_fake("torchlite::sample_patches3d")
def _(volume, centers, theta, size, fill=-1000.0, clip=None, noise_std=0.0, seed=0):
    torch._check(volume.dim() == 3, lambda: f"torchlite.sample_patches3d: `volume` must be 3-D, got {volume.dim()}-D")
    torch._check(
        centers.dim() == 2 and centers.shape[1] == 3,
        lambda: f"torchlite.sample_patches3d: `centers` must be (N, 3), got {tuple(centers.shape)}",
    )
    torch._check(
        theta.dim() == 3 and theta.shape[1] == 3 and theta.shape[2] == 4,
        lambda: f"torchlite.sample_patches3d: `theta` must be (N, 3, 4), got {tuple(theta.shape)}",
    )
    torch._check(
        theta.shape[0] == centers.shape[0],
        lambda: "torchlite.sample_patches3d: `theta` and `centers` must have the same N",
    )
    for name, t in (("centers", centers), ("theta", theta)):
        torch._check(
            t.device == volume.device,
            lambda: f"torchlite.sample_patches3d: `{name}` is on {t.device} but `volume` is on {volume.device}; "
            "move both to the same device",
        )
    torch._check(len(size) == 3, lambda: "torchlite.sample_patches3d: `size` must have 3 entries")
    return volume.new_empty((centers.shape[0], 1, *size), dtype=torch.float32)


def _backward(ctx, grad):
    raise RuntimeError(
        "torchlite.sample_patches3d is not differentiable (it samples data); detach its inputs"
    )


torch.library.register_autograd("torchlite::sample_patches3d", _backward)
