"""Whole-scan segmentation: every slice (or a box of them), with its context, through the U-Net.

The U-Net was trained on slices with ``CONTEXT`` slices each side, HU
clipped to [-1000, 1000], slice indices clamped at the scan's ends (the
first slice is its own context below it): inference builds exactly those
inputs, a batch of slices at a time, by one gather from the scan (no Python
loop over voxels or over the context slices).

With a ``box`` (the lung region, see :mod:`torchlite.analysis.lung_region`)
only the box's slices are segmented, and of each only an in-plane window:
the box's rows and columns widened by the U-Net's reach (``UNET_REACH``)
and to its pooling grid (starting on a multiple of ``SIDE_MULTIPLE``), so
inside the box the output is the whole slice's. Context slices are still clamped to the whole scan,
not to the box. Voxels outside the box get probability 0.
"""

from __future__ import annotations

import operator

import torch
import torch.nn as nn
from tqdm import tqdm

from torchlite.data.datasets.patch_dataset import HU_CLIP
from torchlite.models.layout import fast_layout

CONTEXT = 3  # slices each side; UNetWrapper takes 2 * CONTEXT + 1 channels
# The U-Net pools twice by 2 (depth 3): on other sides its output shrinks, so
# slices are padded with air up to a multiple of this, and the output cropped.
SIDE_MULTIPLE = 4
# How far (pixels) an input pixel reaches in the book's U-Net's output: two
# 3x3 convolutions at each of 3 levels, down and up (measured: 23). A box's
# in-plane window is read this much wider than the box, so inside the box
# the probabilities are the whole slice's.
UNET_REACH = 24


def context_indices(start: int, stop: int, depth: int) -> torch.Tensor:
    """(stop - start, 2 * CONTEXT + 1) slice indices, clamped to the scan."""
    offsets = torch.arange(-CONTEXT, CONTEXT + 1)
    return (torch.arange(start, stop)[:, None] + offsets[None, :]).clamp_(0, depth - 1)


def slices_with_context(volume: torch.Tensor, start: int, stop: int, rows: slice = slice(None),
                        cols: slice = slice(None)) -> torch.Tensor:
    """(stop - start, 7, h, w) float32 HU, clipped, for slices start..stop-1 of (D, H, W) ``volume``
    (``rows`` x ``cols`` of each: the whole slice by default)."""
    idx = context_indices(start, stop, volume.shape[0])
    window = volume[:, rows, cols]  # a view: the gather below reads only the window
    return window[idx.flatten()].to(torch.float32).clamp_(*HU_CLIP).view(len(idx), idx.shape[1], *window.shape[1:])


def _grid_window(lo: int, hi: int, size: int) -> tuple[int, int, int]:
    """[lo, hi) widened to start on a multiple of SIDE_MULTIPLE and span one (within ``size``):
    (start, stop, air padding still needed at the end)."""
    start = lo - lo % SIDE_MULTIPLE
    stop = min(size, hi + -hi % SIDE_MULTIPLE)
    return start, stop, -(stop - start) % SIDE_MULTIPLE


def _check_box(box, shape) -> tuple[int, int, int, int, int, int]:
    if box is None:
        return 0, shape[0], 0, shape[1], 0, shape[2]
    error = ValueError(f"segment_volume: `box` must be (z0, z1, y0, y1, x0, x1) integers, non-empty and inside "
                       f"the scan {tuple(shape)}, got {box!r}")
    try:
        values = (box.z0, box.z1, box.y0, box.y1, box.x0, box.x1) if hasattr(box, "z0") else tuple(box)
        if any(isinstance(v, bool) for v in values):
            raise TypeError
        values = tuple(operator.index(v) for v in values)
    except TypeError:
        raise error from None
    if len(values) != 6 or not all(0 <= values[2 * a] < values[2 * a + 1] <= shape[a] for a in range(3)):
        raise error
    return values


@torch.inference_mode()
def segment_volume(volume: torch.Tensor, model: nn.Module, *, batch_size: int = 1,
                   device: torch.device | str = "cpu", channels_last: bool | None = None,
                   progress: bool = False, desc: str = "segment", box=None) -> torch.Tensor:
    """Nodule probability of every voxel of (D, H, W) ``volume``: (D, H, W) float32 on the CPU.

    ``channels_last``: the slices' layout (None: models/layout.py's rule for ``device``).
    ``box``: a :class:`~torchlite.analysis.lung_region.LungBox` or half-open (z0, z1, y0, y1, x0, x1):
    segment only there, probability 0 elsewhere (None: every voxel)."""
    if volume.dim() != 3 or min(volume.shape) == 0:
        raise ValueError(f"segment_volume: `volume` must be a non-empty (D, H, W) scan, got shape {tuple(volume.shape)}")
    if batch_size < 1:
        raise ValueError(f"segment_volume: `batch_size` must be >= 1, got {batch_size}")
    device = torch.device(device)
    layout = fast_layout(4, device) if channels_last is None else (
        torch.channels_last if channels_last else torch.contiguous_format)
    z0, z1, y0, y1, x0, x1 = _check_box(box, volume.shape)
    r0, r1, pad_h = _grid_window(max(0, y0 - UNET_REACH), min(volume.shape[1], y1 + UNET_REACH), volume.shape[1])
    c0, c1, pad_w = _grid_window(max(0, x0 - UNET_REACH), min(volume.shape[2], x1 + UNET_REACH), volume.shape[2])
    rows, cols = slice(r0, r1), slice(c0, c1)
    whole = (z0, z1, y0, y1, x0, x1) == (0, volume.shape[0], 0, volume.shape[1], 0, volume.shape[2])
    out = torch.empty(volume.shape, dtype=torch.float32) if whole else torch.zeros(volume.shape, dtype=torch.float32)
    starts = range(z0, z1, batch_size)
    for start in tqdm(starts, desc=desc, unit="batch", disable=not progress, leave=False):
        stop = min(start + batch_size, z1)
        x = slices_with_context(volume, start, stop, rows, cols)
        if pad_h or pad_w:
            x = torch.nn.functional.pad(x, (0, pad_w, 0, pad_h), value=HU_CLIP[0])
        x = x.to(device, non_blocking=True)
        x = x.contiguous(memory_format=layout)
        out[start:stop, y0:y1, x0:x1] = model(x)[:, 0, y0 - r0:y1 - r0, x0 - c0:x1 - c0].float().cpu()
    return out
