"""Nodule / non-nodule classification samples (the book's chapters 11-12).

Book behaviour kept: chapter 11-12 candidate list (candidates.csv with
annotation diameters attached), 32x48x48 patches clipped to [-1000, 1000]
HU, and ``ratio`` balancing with the book's ``ratio_int`` semantics: in
every block of ``ratio + 1`` items the first is a nodule and the other
``ratio`` are non-nodules, each list cycled in a per-epoch shuffled order
(ratio=1 alternates nodule, non-nodule; ratio=0 is unbalanced: the whole
list, shuffled each epoch). A validation set is every candidate of the
validation series, in the unified list's order, unbalanced and unaugmented,
as the book's. Changes are listed in :mod:`torchlite.data.datasets.patch_dataset`.
"""

from __future__ import annotations

import numpy as np

from torchlite.data.datasets import sampling
from torchlite.data.datasets.patch_dataset import PatchDataset

# Chapter 14's LunaDataset (chapter 12 used 200,000).
BOOK_EPOCH_SAMPLES = 50_000


class CandidateDataset(PatchDataset):
    """Candidate patches labelled nodule (1) / not (0).

    Args:
        source: a :class:`LunaSource` or a LUNA16 folder.
        val: the validation half of the series split (else training).
        val_stride: every ``val_stride``-th series (sorted uids) is validation.
        ratio: non-nodules per nodule in training (0: unbalanced). Ignored
            for validation.
        epoch_samples: items per training epoch; default 50,000 when
            balanced (the book's chapter 14), the list's length when not.
        size: patch size (index, row, column), default (32, 48, 48).
        clamp: shift windows inside the scan as the book does (default:
            centered, air beyond the scan).
        clip: HU range applied on read (None: none). fill: HU beyond the scan.
        augment: None, "sample" (per item, by ``sample_patches3d`` from the
            scan) or "batch" (plain crops; see :meth:`batch_augment`).
        augmentation: a ``RandomAffine3d`` (default: the book's knobs).
        crop_dtype: dtype of un-augmented crops, torch.float32 or torch.int16
            (exact integer HU, half the bytes); default int16 for
            augment="batch", float32 otherwise.
        seed: seeds epoch orders and augmentation (see ``set_epoch``).
        cache_dir: conversion cache for scans that cannot be mapped in place.
        max_open: scans each process keeps mapped.
    """

    style = "classification"

    def __init__(self, source, *, ratio: int = 1, **kwargs):
        if isinstance(ratio, bool) or not isinstance(ratio, int) or ratio < 0:
            raise ValueError(f"`ratio` must be an integer >= 0, got {ratio!r}")
        self.ratio = ratio
        super().__init__(source, **kwargs)

    def _make_lists(self) -> dict[str, np.ndarray]:
        t = self.table
        lists = {"all": t.rows()}
        self._require(all=lists["all"])
        if not self.val and self.ratio:
            lists["positive"] = t.rows(t.is_nodule)
            lists["negative"] = t.rows(~t.is_nodule)
            self._require(positive=lists["positive"], negative=lists["negative"])
        return lists

    def _default_length(self) -> int:
        if self.val or not self.ratio:
            return len(self.lists["all"])
        return BOOK_EPOCH_SAMPLES

    def _locate(self, ndx: int) -> tuple[str, int]:
        if self.val or not self.ratio:
            return "all", ndx
        positive, ordinal = sampling.balanced_index(ndx, self.ratio)
        return ("positive" if positive else "negative"), ordinal

    def _label(self, row: int) -> int:
        return int(self.table.is_nodule[row])
