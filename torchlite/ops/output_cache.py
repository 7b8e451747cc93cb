"""The CPU operators' output cache (csrc/memory/output_pool.h).

The CPU kernels of crop3d, affine3d/2d, sample_patches3d and dice_loss's
backward take outputs of 4 MB or more from a small cache of their own freed
outputs, so an operator called in a loop does not pay for faulting in fresh
pages on every call (for crop3d's 75 MB batch of candidates that cost more
than the crop). ``TORCHLITE_OUTPUT_CACHE_MB`` (read once, default 512, 0 turns
the cache off) bounds what is held while unused.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class OutputCacheInfo:
    cached_bytes: int  # held while unused, ready for reuse
    cached_blocks: int
    limit_bytes: int
    reuses: int  # allocations served from the cache
    fresh: int  # allocations the cache could not serve


def output_cache_info() -> OutputCacheInfo:
    """What the cache holds now and how often it has served."""
    return OutputCacheInfo(*torch.ops.torchlite._output_cache_stats())


def release_output_cache() -> None:
    """Give every unused cached output back to the system (and reset the counts)."""
    torch.ops.torchlite._output_cache_release()
