"""The train/validation split: by series, never by sample, the same for every dataset.

The book (chapter 14) sorts the series uids, takes every ``val_stride``-th
one (``series_list[::val_stride]``: positions 0, val_stride, 2 val_stride,
...) for validation and trains on the rest. Chapter 11-12's LunaDataset
split the *candidate list* that way instead, so one series could feed both
sets; and each dataset split over the series of its own candidate list, so
the classification and segmentation splits could differ. Here there is one
function, applied by every dataset to the same universe (the series on disk,
see :class:`~torchlite.data.datasets.source.LunaSource`), so the three
datasets agree and no series is ever in both halves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class SeriesSplit:
    """Series uids of each half, in sorted order."""

    train: tuple[str, ...]
    val: tuple[str, ...]
    val_stride: int

    def half(self, val: bool) -> tuple[str, ...]:
        return self.val if val else self.train


def split_series(series_uids: Iterable[str], val_stride: int = 10) -> SeriesSplit:
    """Every ``val_stride``-th series of the sorted uids is validation (the
    first one included), the others training. ``val_stride=0`` puts every
    series in training (no validation set), as the book's ``val_stride=0``."""
    if isinstance(val_stride, bool) or not isinstance(val_stride, int) or val_stride < 0:
        raise ValueError(f"`val_stride` must be an integer >= 0, got {val_stride!r}")
    uids = sorted(set(series_uids))
    if val_stride == 0:
        return SeriesSplit(tuple(uids), (), 0)
    val = tuple(uids[::val_stride])
    train = tuple(uid for i, uid in enumerate(uids) if i % val_stride)
    return SeriesSplit(train, val, val_stride)
