"""The machinery shared by the candidate and malignancy datasets.

Both hand out 3D patches around candidate centers, drawn from lists that are
reshuffled every epoch, optionally augmented. What stays from the book
(chapters 11-14, ``LunaDataset``):

- 32x48x48 (index, row, column) patches in HU, clipped to [-1000, 1000]
  (the book clips the whole scan on load; here the clip is applied as the
  voxels are read, on a memory-mapped scan, with no preprocessing pass);
- the augmentation knobs (flip, offset, scale, rotation, noise 25 HU), drawn
  per sample;
- items ``(crop, label, series_uid, center_irc)``.

What changes, and why:

- patches are centered on the candidate, and voxels beyond the scan read
  air (-1000 HU); the book shifts the window inward at the scan's edge,
  which moves the candidate off-center. ``clamp=True`` restores that;
- the label is a class index (int64 scalar: 1 nodule / malignant, 0 not),
  what ``nn.CrossEntropyLoss`` takes. The book's ch11-12 one-hot ``(2,)``
  label is ``F.one_hot(label, 2)``; its ch14 items carry both;
- augmentation is applied by ``sample_patches3d`` straight from the scan
  (``augment="sample"``): a rotated patch gets real tissue in its corners
  where the book's crop-then-``grid_sample`` repeats the crop's edge voxels.
  ``augment="batch"`` instead returns plain crops and leaves augmentation to
  a :class:`~torchlite.data.datasets.batch_augment.BatchAugment3d` on the
  training device (the book's chapter 13 way, one call per batch, with the
  crop-edge padding of the book). Those crops are int16 HU by default
  (``crop_dtype``): the scans are int16 and a plain crop with an integer
  clip and fill holds only their values, so it is exact in half the bytes
  of float32, and half the bytes is what a DataLoader worker's batch costs
  to hand over (shared memory, ~0.5 ms per MB on the 2-core VM) and to copy to a GPU;
- randomness (epoch order, augmentation) is drawn from generators seeded by
  (seed, epoch, index): an item is the same whatever the number of
  DataLoader workers, and a seeded run repeats. Call :meth:`set_epoch`
  before each epoch (as with DistributedSampler). Workers receive the epoch
  when the DataLoader iterator is created, so ``persistent_workers=True``
  would keep the first epoch's order: leave it off;
- the epoch length is ``epoch_samples`` (the book hard-codes 50,000-300,000);
- a scan that cannot be opened is skipped by a :class:`ScanPool` (one
  warning, counted in :attr:`n_broken` of the process that met it) and the
  item is taken from the next candidate of the same list instead, so an
  epoch never dies on a bad file;
- only small arrays are pickled to workers (see ``CandidateTable``); each
  worker maps the scans it needs itself.
"""

from __future__ import annotations

import abc
import os
from typing import TYPE_CHECKING, ClassVar, NamedTuple, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from torchlite.data.datasets import sampling
from torchlite.data.datasets.source import LunaSource, as_source
from torchlite.data.scan import CtScan
from torchlite.data.scan_pool import ScanPool

if TYPE_CHECKING:  # the operators load the compiled library: import them on use
    from torchlite.data.datasets.batch_augment import BatchAugment3d
    from torchlite.ops.random_affine import RandomAffine3d

PATCH_SIZE = (32, 48, 48)
HU_CLIP = (-1000.0, 1000.0)
AIR_HU = -1000.0
AUGMENT_MODES = (None, "sample", "batch")
CROP_DTYPES = (torch.float32, torch.int16)


class CandidateSample(NamedTuple):
    """One item. DataLoader's default collate stacks each field into a batch
    of the same NamedTuple (series_uid becomes a list of str)."""

    crop: torch.Tensor  # (1, d, h, w) HU, float32 (int16 for augment="batch": see crop_dtype)
    label: torch.Tensor  # () int64 class index
    series_uid: str
    center_irc: torch.Tensor  # (3,) int64, the candidate's voxel (before any clamp shift)


def clamped_center(center: np.ndarray, shape: Sequence[int], size: Sequence[int]) -> np.ndarray:
    """The center whose window of ``size`` is shifted inside ``shape`` as the
    book does (start clamped to [0, dim - size]); crop3d's ``clamp=True``."""
    out = np.array(center, dtype=np.int64)
    for axis, (dim, s) in enumerate(zip(shape, size)):
        start = min(max(int(out[axis]) - s // 2, 0), max(dim - s, 0))
        out[axis] = start + s // 2
    return out


def check_clip(clip) -> tuple[float, float] | None:
    if clip is None:
        return None
    clip = (float(clip[0]), float(clip[1]))
    if not clip[0] <= clip[1]:
        raise ValueError(f"`clip` must be (lo, hi) with lo <= hi, got {clip}")
    return clip


def _exact_in_int16(value: float) -> bool:
    limits = torch.iinfo(torch.int16)
    return float(value).is_integer() and limits.min <= value <= limits.max


def check_crop_dtype(crop_dtype, augment, clip, fill) -> torch.dtype:
    """The crop dtype: ``None`` picks int16 for ``augment="batch"`` (crops
    that wait for the batch augmentation), float32 otherwise. int16 must be
    exact: no per-sample augmentation (it interpolates) and an integer clip
    and fill (the scans themselves are int16)."""
    if crop_dtype is None:
        crop_dtype = torch.int16 if augment == "batch" else torch.float32
    if crop_dtype not in CROP_DTYPES:
        raise ValueError(f"`crop_dtype` must be one of {CROP_DTYPES}, got {crop_dtype!r}")
    if crop_dtype == torch.int16:
        if augment == "sample":
            raise ValueError("`crop_dtype` int16 is for plain crops; augment='sample' interpolates: use float32")
        bad = [f"fill={fill}"] if not _exact_in_int16(fill) else []
        if clip is not None:
            bad += [f"clip={clip}"] if not all(_exact_in_int16(c) for c in clip) else []
        if bad:
            raise ValueError(
                f"int16 crops (the default of augment='batch') hold integer HU only, got {', '.join(bad)}: "
                "use integers or crop_dtype=torch.float32"
            )
    return crop_dtype


def _check_size(size) -> tuple[int, int, int]:
    size = tuple(size)
    if len(size) != 3 or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s <= 0 for s in size):
        raise ValueError(f"`size` must be 3 positive integers (d, h, w), got {size!r}")
    return tuple(int(s) for s in size)


class PatchDataset(Dataset, abc.ABC):
    """Base of CandidateDataset and MalignancyDataset (see the module doc).

    Subclasses set ``style`` (which candidate list of the source) and
    implement ``_make_lists`` (row lists of the table, named as in
    ``sampling.LIST_STREAMS``), ``_default_length``, ``_locate(ndx)`` (which
    list, which ordinal in it) and ``_label(row)``.
    """

    style: ClassVar[str]

    def __init__(
        self,
        source: LunaSource | str | os.PathLike,
        *,
        val: bool = False,
        val_stride: int = 10,
        epoch_samples: int | None = None,
        size: Sequence[int] = PATCH_SIZE,
        clamp: bool = False,
        clip: Sequence[float] | None = HU_CLIP,
        fill: float = AIR_HU,
        augment: str | None = None,
        augmentation: "RandomAffine3d | None" = None,
        crop_dtype: torch.dtype | None = None,
        seed: int = 0,
        cache_dir: str | os.PathLike | None = None,
        max_open: int = 64,
    ):
        if augment not in AUGMENT_MODES:
            raise ValueError(f"`augment` must be one of {AUGMENT_MODES}, got {augment!r}")
        if val and augment is not None:
            raise ValueError("`augment` is for training sets; a validation set (val=True) is never augmented")
        if epoch_samples is not None:
            sampling.check_int("epoch_samples", epoch_samples, 1)
        self.size = _check_size(size)
        self.val = bool(val)
        self.clamp, self.clip, self.fill = bool(clamp), check_clip(clip), float(fill)
        self.crop_dtype = check_crop_dtype(crop_dtype, augment, self.clip, self.fill)
        self.seed = sampling.check_int("seed", seed)
        self.augment = augment
        if augment is not None and augmentation is None:
            from torchlite.ops.random_affine import RandomAffine3d

            augmentation = RandomAffine3d()
        self.augmentation = augmentation
        src = as_source(source, cache_dir)
        self.table, paths = src.table(self.style, self.val, val_stride)
        self.pool = ScanPool(paths, cache_dir=src.cache_dir, max_open=max_open)
        self.epoch = 0
        self.lists = sampling.EpochOrders(self._make_lists(), self.seed, shuffle=not self.val)
        self._length = epoch_samples if (epoch_samples is not None and not self.val) else self._default_length()

    # --- subclass hooks ---------------------------------------------------------
    @abc.abstractmethod
    def _make_lists(self) -> dict[str, np.ndarray]:
        ...

    @abc.abstractmethod
    def _default_length(self) -> int:
        ...

    @abc.abstractmethod
    def _locate(self, ndx: int) -> tuple[str, int]:
        ...

    @abc.abstractmethod
    def _label(self, row: int) -> int:
        ...

    def _require(self, **lists: np.ndarray) -> None:
        for name, rows in lists.items():
            if len(rows) == 0:
                half = "validation" if self.val else "training"
                raise ValueError(
                    f"{type(self).__name__}: no {name} candidates in the {half} series "
                    f"({len(self.pool.paths)} series, {len(self.table)} candidates)"
                )

    # --- epochs and order -------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order and augmentation items follow."""
        self.epoch = sampling.check_int("epoch", epoch)

    def __len__(self) -> int:
        return self._length

    @property
    def n_broken(self) -> int:
        """Scans this process skipped as broken (workers count their own)."""
        return self.pool.n_broken

    # --- items ------------------------------------------------------------------
    def __getitem__(self, ndx: int) -> CandidateSample:
        ndx = int(ndx)
        if not 0 <= ndx < len(self):
            raise IndexError(f"{type(self).__name__} index {ndx} out of range [0, {len(self)})")
        name, ordinal = self._locate(ndx)
        rows = self.lists.order(name, self.epoch)
        for step in range(len(rows)):
            row = int(rows[(ordinal + step) % len(rows)])
            scan = self.pool.get(self.table.uid(row))
            if scan is not None:
                return self._sample(scan, row, ndx)
        raise RuntimeError(
            f"{type(self).__name__}: every scan of a sample list is broken "
            f"({self.pool.n_broken} broken: {sorted(self.pool.broken.values())[:3]} ...)"
        )

    def _sample(self, scan: CtScan, row: int, ndx: int) -> CandidateSample:
        center = self.table.center_irc[row].astype(np.int64)
        if self.augment == "sample":
            crop = self._augmented_crop(scan, center, ndx)
        else:
            crop = scan.crop(center[None], self.size, clip=self.clip, fill=self.fill, clamp=self.clamp)[0]
            if self.crop_dtype != crop.dtype:  # exact: integer HU (see check_crop_dtype)
                crop = crop.to(self.crop_dtype)
        label = torch.tensor(self._label(row), dtype=torch.int64)
        return CandidateSample(crop, label, self.table.uid(row), torch.from_numpy(center))

    def augmentation_generator(self, ndx: int) -> torch.Generator:
        """The generator item ``ndx`` of the current epoch draws its augmentation from."""
        return sampling.generator(self.seed, self.epoch, sampling.AUGMENT, ndx)

    def _augmented_crop(self, scan: CtScan, center: np.ndarray, ndx: int) -> torch.Tensor:
        from torchlite.ops.sample_patches import sample_patches3d
        from torchlite.ops.theta import normalized_theta_to_voxel

        draw = self.augmentation.draw(1, self.augmentation_generator(ndx))
        # The book's theta is relative to the patch (normalized, align_corners
        # False); in voxels it is the same resampling, read from the scan.
        theta = normalized_theta_to_voxel(draw.theta.to(torch.float64), self.size)
        if self.clamp:
            center = clamped_center(center, scan.shape, self.size)
        crop = sample_patches3d(
            scan.tensor,
            torch.from_numpy(center)[None],
            theta,
            self.size,
            fill=self.fill,
            clip=self.clip,
            noise_std=draw.noise_std,
            seed=draw.seed,
        )
        return crop[0]

    def batch_augment(self) -> "BatchAugment3d":
        """The batch-side augmentation matching this dataset (``augment="batch"``)."""
        from torchlite.data.datasets.batch_augment import BatchAugment3d

        if self.augment != "batch":
            raise ValueError(f"batch_augment() is for augment='batch', this dataset has augment={self.augment!r}")
        return BatchAugment3d(self.augmentation, seed=self.seed)

    def __repr__(self) -> str:
        half = "validation" if self.val else "training"
        return (
            f"{type(self).__name__}({half}, {len(self.pool.paths)} series, {len(self.table)} candidates, "
            f"lists {self.lists!r}, {len(self)} items/epoch, augment={self.augment!r}, seed={self.seed})"
        )
