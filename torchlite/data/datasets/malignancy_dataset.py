"""Benign / malignant samples (the book's chapter 14, ``MalignantLunaDataset``).

Book behaviour kept: the chapter 13-14 list (annotated nodules from
annotations_with_malignancy.csv, with their malignancy; class-0 candidates
as non-nodules), and its training mix: odd items are malignant nodules,
items 0 mod 4 benign nodules and items 2 mod 4 non-nodules (50% / 25% /
25%), each list cycled in a per-epoch shuffled order; the label is
malignant (1) or not (0), so non-nodules count as not malignant. A
validation set is the benign then the malignant nodules of the validation
series, each once. Patches, augmentation and the other changes are those of
:mod:`torchlite.data.datasets.patch_dataset`.
"""

from __future__ import annotations

import numpy as np

from torchlite.data.datasets.patch_dataset import PatchDataset

BOOK_EPOCH_SAMPLES = 100_000


class MalignancyDataset(PatchDataset):
    """Nodule patches labelled malignant (1) / not (0). Arguments as
    :class:`~torchlite.data.datasets.candidate_dataset.CandidateDataset`
    (without ``ratio``: the mix is fixed); ``epoch_samples`` defaults to
    100,000 (the book's)."""

    style = "malignancy"

    def _make_lists(self) -> dict[str, np.ndarray]:
        t = self.table
        benign = t.rows(t.is_nodule & ~t.is_malignant)
        malignant = t.rows(t.is_nodule & t.is_malignant)
        if self.val:
            lists = {"all": np.concatenate([benign, malignant])}
            self._require(nodule=lists["all"])
            return lists
        lists = {"malignant": malignant, "benign": benign, "negative": t.rows(~t.is_nodule)}
        self._require(**{"malignant": malignant, "benign": benign, "non-nodule": lists["negative"]})
        return lists

    def _default_length(self) -> int:
        return len(self.lists["all"]) if self.val else BOOK_EPOCH_SAMPLES

    def _locate(self, ndx: int) -> tuple[str, int]:
        if self.val:
            return "all", ndx
        if ndx % 2:
            return "malignant", ndx // 2
        return ("benign" if ndx % 4 == 0 else "negative"), ndx // 4

    def _label(self, row: int) -> int:
        return int(self.table.is_malignant[row])
