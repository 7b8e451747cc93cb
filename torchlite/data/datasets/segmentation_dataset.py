"""Segmentation samples: 2D slices with context, and the book's nodule masks.

Book behaviour kept (chapter 13, ``Luna2dSegmentationDataset`` and
``TrainingLuna2dSegmentationDataset``):

- masks: boxes grown around each annotated nodule, intersected with
  HU > -700 (:mod:`torchlite.data.datasets.masks`, three bugs fixed);
- training items: around a nodule, a 96x96 window (shifted inside the scan
  as the book's ``getRawCandidate`` does), then a random 64x64 part of it,
  on the nodule's slice with 3 context slices each side: ``ct`` (7, 64, 64)
  float32 HU clipped to [-1000, 1000], ``mask`` (1, 64, 64) of the middle
  slice; 300,000 items an epoch by default (``epoch_samples``), the nodule
  list reshuffled each epoch;
- validation items: whole slices with 3 context slices each side, slice
  indices clamped to the scan (the first slice repeats as its own context
  below it, the last above it), over the slices the mask touches
  (``full_ct=True``: every slice);
- no augmentation in the dataset: the book augments segmentation batches
  on the GPU (``RandomAffine2d`` does that, one operator call per batch).

Changes:

- ``negative_fraction`` (default 0.25) of the training items are centered
  on non-nodule candidates (the hard negatives: vessels, pleura) instead of
  nodules; the book trains on nodule-centered crops only, so its model
  never sees a crop without a nodule. A negative whose label slice touches
  a nodule box moves on to the next candidate (up to 16 tries; the label is
  always the true mask, whatever crop is returned);
- training context slices are clamped like validation's, so the label
  slice is always the middle one; the book shifts the 7-slice window inward
  near the scan's first or last slice, where its label (``pos_a[3:4]``) is
  then not the nodule's slice and its returned ``slice_ndx`` is wrong;
- the random 64x64 offset is drawn from 0..32 inclusive (the book's
  ``randrange(0, 32)`` never takes the last offset, biasing the nodule's
  position), from a generator seeded by (seed, epoch, index);
- masks are ``bool`` in both halves (the book's training masks are long,
  its validation masks bool); ``slice_index`` is an int in both;
- the split is by series, shared with the other datasets (the book's is
  too, but over the series of its own candidate list);
- masks are never built for whole scans: per scan the nodule boxes are
  computed once per process, lazily (a few hundred voxel reads), and each
  item's mask is its boxes & (its own crop > -700). The book rebuilds the
  whole-scan mask whenever its one-entry ``getCt`` cache misses, i.e. for
  nearly every shuffled item without its disk cache.
"""

from __future__ import annotations

import os
from typing import NamedTuple, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from torchlite.data.datasets import masks, sampling
from torchlite.data.datasets.patch_dataset import AIR_HU, HU_CLIP, check_clip
from torchlite.data.datasets.source import LunaSource, as_source
from torchlite.data.scan import CtScan
from torchlite.data.scan_pool import ScanPool

BOOK_EPOCH_SAMPLES = 300_000
NEGATIVE_TRIES = 16


class SegmentationSample(NamedTuple):
    ct: torch.Tensor  # (2 * context_slices + 1, h, w) float32, HU
    mask: torch.Tensor  # (1, h, w) bool, the middle slice's nodule mask
    series_uid: str
    slice_index: int  # the middle slice's index in the scan


class SegmentationDataset(Dataset):
    """Slices with context and nodule masks (see the module doc).

    Args:
        source: a :class:`LunaSource` or a LUNA16 folder. Nodules are the
            rows of annotations_with_malignancy.csv (annotations.csv when it
            is absent); negatives are class-0 candidates.
        val: the validation half of the series split (else training).
        val_stride: every ``val_stride``-th series (sorted uids) is validation.
        context_slices: slices on each side of the label slice (book: 3).
        crop_size, patch_size: training window, and its random part (96, 64).
        full_ct: validation over every slice instead of the masked ones.
        negative_fraction: share of training items centered off nodules.
        epoch_samples: training items per epoch (default 300,000).
        threshold_hu: the mask's HU threshold (book: -700).
        clip: HU range applied on read (None: none). fill: HU beyond the scan.
        seed: seeds epoch orders and crop offsets (see ``set_epoch``).
        cache_dir, max_open: as in :class:`ScanPool`.
    """

    def __init__(
        self,
        source: LunaSource | str | os.PathLike,
        *,
        val: bool = False,
        val_stride: int = 10,
        context_slices: int = 3,
        crop_size: int = 96,
        patch_size: int = 64,
        full_ct: bool = False,
        negative_fraction: float = 0.25,
        epoch_samples: int | None = None,
        threshold_hu: float = masks.THRESHOLD_HU,
        clip: Sequence[float] | None = HU_CLIP,
        fill: float = AIR_HU,
        seed: int = 0,
        cache_dir: str | os.PathLike | None = None,
        max_open: int = 64,
    ):
        self.val = bool(val)
        self.context_slices = sampling.check_int("context_slices", context_slices)
        self.patch_size = sampling.check_int("patch_size", patch_size, 1)
        self.crop_size = sampling.check_int("crop_size", crop_size, self.patch_size)
        self.full_ct = bool(full_ct)
        self.negative_fraction = sampling.as_fraction("negative_fraction", negative_fraction)
        if epoch_samples is not None:
            sampling.check_int("epoch_samples", epoch_samples, 1)
        self.threshold_hu = float(threshold_hu)
        clip = check_clip(clip)
        if clip is not None:
            if not clip[0] < self.threshold_hu < clip[1]:
                raise ValueError(
                    f"`clip` {clip} must contain `threshold_hu` {self.threshold_hu}: "
                    "masks are thresholded on clipped voxels"
                )
        if float(fill) > self.threshold_hu:
            raise ValueError(
                f"`fill` {fill} must not exceed `threshold_hu` {self.threshold_hu}: "
                "voxels beyond the scan are not nodule"
            )
        self.clip, self.fill = clip, float(fill)
        self.seed = sampling.check_int("seed", seed)
        self.epoch = 0

        src = as_source(source, cache_dir)
        self.table, paths = src.table("segmentation", self.val, val_stride)
        self.pool = ScanPool(paths, cache_dir=src.cache_dir, max_open=max_open)
        t = self.table
        nodules = t.rows(t.is_nodule)
        # series index -> its nodules' centers (IRC), for the boxes
        self._nodule_centers = {
            int(s): t.center_irc[nodules[t.series[nodules] == s]].astype(np.int64) for s in np.unique(t.series[nodules])
        }
        self._boxes: dict[int, np.ndarray] = {}
        if self.val:
            self._slices = self._validation_slices()
            self._length = len(self._slices)
            if self._length == 0:
                raise ValueError(f"SegmentationDataset: no validation slices in {len(paths)} series")
        else:
            self.lists = sampling.EpochOrders(
                {"positive": nodules, "negative": t.rows(~t.is_nodule)}, self.seed, shuffle=True
            )
            if len(nodules) == 0:
                raise ValueError(f"SegmentationDataset: no nodules in the {len(paths)} training series")
            if self.negative_fraction[0] and len(self.lists["negative"]) == 0:
                raise ValueError(
                    "SegmentationDataset: negative_fraction > 0 needs non-nodule candidates in the training series"
                )
            self._length = BOOK_EPOCH_SAMPLES if epoch_samples is None else epoch_samples

    # --- per scan ---------------------------------------------------------------
    def boxes(self, series: int, scan: CtScan) -> np.ndarray:
        """(K, 2, 3) nodule boxes of a series, computed on first use."""
        if series not in self._boxes:
            centers = self._nodule_centers.get(series, np.zeros((0, 3), dtype=np.int64))
            self._boxes[series] = masks.nodule_boxes(scan.array, centers, self.threshold_hu)
        return self._boxes[series]

    def _validation_slices(self) -> np.ndarray:
        """(M, 2) int64 (series index, slice) of every validation item."""
        items = []
        for series, uid in enumerate(self.table.uids):
            scan = self.pool.get(uid)  # broken scans are skipped (and counted) here, once
            if scan is None:
                continue
            if self.full_ct:
                slices = np.arange(scan.shape[0])
            else:
                slices = masks.positive_slices(scan.array, self.boxes(series, scan), self.threshold_hu)
            items.append(np.stack([np.full(len(slices), series), slices], axis=1))
        return np.concatenate(items).astype(np.int64) if items else np.zeros((0, 2), dtype=np.int64)

    # --- epochs -----------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order and crop offsets items follow."""
        self.epoch = sampling.check_int("epoch", epoch)

    def __len__(self) -> int:
        return self._length

    @property
    def n_broken(self) -> int:
        """Scans this process skipped as broken (workers count their own)."""
        return self.pool.n_broken

    # --- items ------------------------------------------------------------------
    def _context_crop(self, scan: CtScan, slice_index: int, row0: int, col0: int, h: int, w: int) -> torch.Tensor:
        """(2c+1, h, w): the slices around ``slice_index`` (clamped to the
        scan), rows/columns from (row0, col0); one crop3d call."""
        depth = scan.shape[0]
        slices = np.clip(np.arange(-self.context_slices, self.context_slices + 1) + slice_index, 0, depth - 1)
        centers = np.stack(
            [slices, np.full_like(slices, row0 + h // 2), np.full_like(slices, col0 + w // 2)], axis=1
        )
        crop = scan.crop(centers, (1, h, w), clip=self.clip, fill=self.fill)
        return crop.view(len(slices), h, w)

    def _item(self, scan: CtScan, series: int, slice_index: int, row0: int, col0: int, h: int, w: int):
        ct = self._context_crop(scan, slice_index, row0, col0, h, w)
        label_slice = ct[self.context_slices : self.context_slices + 1].numpy()
        mask = masks.window_mask(self.boxes(series, scan), (slice_index, row0, col0), label_slice, self.threshold_hu)
        return SegmentationSample(ct, torch.from_numpy(mask), self.table.uids[series], int(slice_index))

    def __getitem__(self, ndx: int) -> SegmentationSample:
        ndx = int(ndx)
        if not 0 <= ndx < len(self):
            raise IndexError(f"SegmentationDataset index {ndx} out of range [0, {len(self)})")
        if self.val:
            series, slice_index = (int(v) for v in self._slices[ndx])
            scan = self.pool.get(self.table.uids[series])
            if scan is None:
                raise RuntimeError(f"validation scan {self.table.uids[series]} broke after the dataset was built")
            _, h, w = scan.shape
            return self._item(scan, series, slice_index, 0, 0, h, w)
        return self._training_item(ndx)

    def _training_item(self, ndx: int) -> SegmentationSample:
        negative, ordinal = sampling.fraction_index(ndx, *self.negative_fraction)
        rows = self.lists.order("negative" if negative else "positive", self.epoch)
        spare = self.crop_size - self.patch_size
        g = sampling.generator(self.seed, self.epoch, sampling.CROP_OFFSET, ndx)
        offsets = torch.randint(0, spare + 1, (2,), generator=g)
        tries = min(len(rows), NEGATIVE_TRIES) if negative else len(rows)
        fallback = None
        for step in range(len(rows)):
            row = int(rows[(ordinal + step) % len(rows)])
            series = int(self.table.series[row])
            scan = self.pool.get(self.table.uids[series])
            if scan is None:
                continue
            ci, cr, cc = (int(v) for v in self.table.center_irc[row])
            _, h, w = scan.shape
            row0 = min(max(cr - self.crop_size // 2, 0), max(h - self.crop_size, 0)) + int(offsets[0])
            col0 = min(max(cc - self.crop_size // 2, 0), max(w - self.crop_size, 0)) + int(offsets[1])
            site = (scan, series, ci, row0, col0, self.patch_size, self.patch_size)
            if not negative:
                return self._item(*site)
            boxes = self.boxes(series, scan)
            if not masks.box_mask(boxes, (ci, row0, col0), (1, self.patch_size, self.patch_size)).any():
                return self._item(*site)
            fallback = fallback or site
            tries -= 1
            if tries <= 0:
                break
        if fallback is not None:
            return self._item(*fallback)
        raise RuntimeError(
            f"SegmentationDataset: every scan of a sample list is broken ({self.pool.n_broken} broken)"
        )

    def __repr__(self) -> str:
        half = "validation" if self.val else "training"
        return (
            f"SegmentationDataset({half}, {len(self.pool.paths)} series, {len(self)} items/epoch, "
            f"seed={self.seed})"
        )
