"""Nodule and malignancy probabilities of candidate centers, batch by batch.

Crops come from the ``crop3d`` operator straight out of the (memory-mapped)
scan: 32x48x48 voxels around each center, HU clipped to [-1000, 1000] on
read, air beyond the scan — what the classifiers were trained on.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from torchlite.data.datasets.patch_dataset import AIR_HU, HU_CLIP, PATCH_SIZE
from torchlite.models.layout import fast_layout


def crop_candidates(volume: torch.Tensor, centers_irc: torch.Tensor) -> torch.Tensor:
    """(N, 1, 32, 48, 48) float32 crops of (D, H, W) ``volume`` at (N, 3) int64 centers."""
    from torchlite.ops import crop3d

    return crop3d(volume, centers_irc, PATCH_SIZE, fill=AIR_HU, clip=HU_CLIP)


@torch.inference_mode()
def positive_probability(model: nn.Module, crops: torch.Tensor, *, batch_size: int = 64,
                         device: torch.device | str = "cpu") -> torch.Tensor:
    """Softmax probability of class 1 (nodule, or malignant) of each crop: (N,) float32 on the CPU."""
    device = torch.device(device)
    out = torch.empty(crops.shape[0], dtype=torch.float32)
    for start in range(0, crops.shape[0], batch_size):
        x = crops[start:start + batch_size].to(device, non_blocking=True).contiguous(
            memory_format=fast_layout(crops.dim(), device))
        _, probs = model(x)
        out[start:start + len(x)] = probs[:, 1].float().cpu()
    return out
