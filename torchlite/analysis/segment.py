"""Whole-scan segmentation: every slice, with its context, through the U-Net.

The U-Net was trained on slices with ``CONTEXT`` slices each side, HU
clipped to [-1000, 1000], slice indices clamped at the scan's ends (the
first slice is its own context below it): inference builds exactly those
inputs, a batch of slices at a time, by one gather from the scan (no Python
loop over voxels or over the context slices).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from tqdm import tqdm

from torchlite.data.datasets.patch_dataset import HU_CLIP

CONTEXT = 3  # slices each side; UNetWrapper takes 2 * CONTEXT + 1 channels
# The U-Net pools twice by 2 (depth 3): on other sides its output shrinks, so
# slices are padded with air up to a multiple of this, and the output cropped.
SIDE_MULTIPLE = 4


def context_indices(start: int, stop: int, depth: int) -> torch.Tensor:
    """(stop - start, 2 * CONTEXT + 1) slice indices, clamped to the scan."""
    offsets = torch.arange(-CONTEXT, CONTEXT + 1)
    return (torch.arange(start, stop)[:, None] + offsets[None, :]).clamp_(0, depth - 1)


def slices_with_context(volume: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """(stop - start, 7, H, W) float32 HU, clipped, for slices start..stop-1 of (D, H, W) ``volume``."""
    idx = context_indices(start, stop, volume.shape[0])
    return volume[idx.flatten()].to(torch.float32).clamp_(*HU_CLIP).view(len(idx), idx.shape[1], *volume.shape[1:])


@torch.inference_mode()
def segment_volume(volume: torch.Tensor, model: nn.Module, *, batch_size: int = 16,
                   device: torch.device | str = "cpu", channels_last: bool | None = None,
                   progress: bool = False, desc: str = "segment") -> torch.Tensor:
    """Nodule probability of every voxel of (D, H, W) ``volume``: (D, H, W) float32 on the CPU."""
    if volume.dim() != 3 or min(volume.shape) == 0:
        raise ValueError(f"segment_volume: `volume` must be a non-empty (D, H, W) scan, got shape {tuple(volume.shape)}")
    if batch_size < 1:
        raise ValueError(f"segment_volume: `batch_size` must be >= 1, got {batch_size}")
    device = torch.device(device)
    if channels_last is None:
        channels_last = device.type == "cpu"  # oneDNN's faster layout for these convolutions
    depth, height, width = volume.shape
    pad_h, pad_w = -height % SIDE_MULTIPLE, -width % SIDE_MULTIPLE
    out = torch.empty(volume.shape, dtype=torch.float32)
    starts = range(0, depth, batch_size)
    for start in tqdm(starts, desc=desc, unit="batch", disable=not progress, leave=False):
        stop = min(start + batch_size, depth)
        x = slices_with_context(volume, start, stop)
        if pad_h or pad_w:
            x = torch.nn.functional.pad(x, (0, pad_w, 0, pad_h), value=HU_CLIP[0])
        x = x.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out[start:stop] = model(x)[:, 0, :height, :width].float().cpu()
    return out
