"""Untrained models whose BatchNorm layers have seen HU-range inputs.

A freshly built model's BatchNorm expects mean 0 and variance 1; fed HU
(-1000..1000) in eval mode its outputs saturate to 0 or 1, and comparisons
between two implementations then test nothing. These statistics are the
exact averages over a few random HU batches.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from torchlite.data.datasets.patch_dataset import HU_CLIP


def random_hu(shape, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) * (HU_CLIP[1] - HU_CLIP[0]) + HU_CLIP[0]


@torch.no_grad()
def calibrated(model: nn.Module, shape, seed: int) -> nn.Module:
    """``model`` with BatchNorm statistics averaged over HU-range batches, in eval mode."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average: the exact statistics of the batches seen
    model.train()
    for k in range(3):
        model(random_hu(shape, seed + k))
    return model.eval()
