"""Deterministic randomness for datasets: what an item is depends only on
(seed, epoch, index), never on the worker that builds it.

The book shuffles its lists in place with the global, unseeded ``random``
module at the start of each epoch (``shuffleSamples``) and draws
augmentation with ``random.random()`` inside ``__getitem__``, from the state
of whichever DataLoader worker builds the item: its runs do not repeat, and
an item's augmentation changes with the number of workers. Here every draw
comes from a ``torch.Generator`` seeded by a hash of the keys it belongs to.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import torch

# Independent streams of one dataset seed: the epoch order of each named
# sample list, and the per-item draws.
LIST_STREAMS = {"all": 0, "positive": 1, "negative": 2, "benign": 3, "malignant": 4}
AUGMENT, CROP_OFFSET, BATCH_AUGMENT = 10, 11, 12


def check_int(name: str, value, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}")
    return int(value)


def derive_seed(*keys: int) -> int:
    """A 63-bit seed mixed from non-negative integer keys (SeedSequence's
    hash: nearby keys give unrelated seeds)."""
    words = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


def generator(*keys: int) -> torch.Generator:
    """A CPU generator seeded from ``keys`` (see :func:`derive_seed`)."""
    return torch.Generator().manual_seed(derive_seed(*keys))


def permutation(n: int, *keys: int) -> np.ndarray:
    """A permutation of ``range(n)`` (int64) drawn from ``keys``."""
    return torch.randperm(n, generator=generator(*keys)).numpy()


class EpochOrders:
    """Named row lists, each in a per-epoch order: the list's own order when
    ``shuffle`` is False (validation), else a permutation drawn from (seed,
    epoch, list) -- the book's per-epoch ``shuffleSamples``. The current
    epoch's permutations are cached in the process and never pickled."""

    def __init__(self, lists: dict[str, np.ndarray], seed: int, shuffle: bool):
        self.lists, self.seed, self.shuffle = lists, seed, shuffle
        self._epoch, self._cache = -1, {}

    def __getitem__(self, name: str) -> np.ndarray:
        return self.lists[name]

    def order(self, name: str, epoch: int) -> np.ndarray:
        rows = self.lists[name]
        if not self.shuffle:
            return rows
        if epoch != self._epoch:
            self._epoch, self._cache = epoch, {}
        if name not in self._cache:
            self._cache[name] = rows[permutation(len(rows), self.seed, epoch, LIST_STREAMS[name])]
        return self._cache[name]

    def __getstate__(self):
        return {"lists": self.lists, "seed": self.seed, "shuffle": self.shuffle, "_epoch": -1, "_cache": {}}

    def __repr__(self) -> str:
        return "{" + ", ".join(f"{k}: {len(v)}" for k, v in self.lists.items()) + "}"


def balanced_index(ndx: int, ratio: int) -> tuple[bool, int]:
    """The book's ``ratio_int`` interleave: in every block of ``ratio + 1``
    items the first is a positive and the other ``ratio`` are negatives
    (ratio=1 alternates positive, negative). Returns (is_positive, ordinal
    within its list), before wrapping around the list's length."""
    pos = ndx // (ratio + 1)
    if ndx % (ratio + 1):
        return False, ndx - 1 - pos
    return True, pos


def fraction_index(ndx: int, numerator: int, denominator: int) -> tuple[bool, int]:
    """Spread a fraction ``numerator / denominator`` of the items evenly:
    item ``ndx`` is *selected* when ``floor((ndx + 1) f) > floor(ndx f)``,
    so every prefix of n items holds ``floor(n f)`` selected ones. Returns
    (selected, ordinal among its kind)."""
    before = ndx * numerator // denominator
    upto = (ndx + 1) * numerator // denominator
    if upto > before:
        return True, before
    return False, ndx - before


def as_fraction(name: str, value: float, max_denominator: int = 1000) -> tuple[int, int]:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and 0.0 <= value < 1.0):
        raise ValueError(f"`{name}` must be a number in [0, 1), got {value!r}")
    f = Fraction(value).limit_denominator(max_denominator)
    return f.numerator, f.denominator
