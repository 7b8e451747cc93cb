"""What differs between cls, seg and mal: model, datasets, augmentation, loss, metrics.

A task turns a batch into a loss and a record for its epoch accumulator;
the loop (:mod:`torchlite.train.loop`) does the rest the same way for all.
"""

from __future__ import annotations

import abc
import argparse
import logging
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from torchlite.data.datasets import CandidateDataset, LunaSource, MalignancyDataset, SegmentationDataset
from torchlite.data.datasets import sampling
from torchlite.models.layout import fast_layout
from torchlite.train import metrics
from torchlite.train.config import DEFAULTS

log = logging.getLogger(__name__)

# The book's recall-weighted Dice loss: dice(p, l) + 8 * dice(p * l, l).
SEG_FN_WEIGHT = 8.0
# Validation slices kept per epoch for TensorBoard overlays.
SEG_OVERLAYS = 4
# The finetune blocks of LunaModel, counted from the head (the book's order).
FINETUNE_BLOCKS = ("head_linear", "block4", "block3", "block2", "block1", "tail_batchnorm")


def augmentation_knobs(args: argparse.Namespace, dims: int) -> dict | None:
    """RandomAffine keyword arguments from --augmented and the per-knob
    switches (None: no augmentation). Values are the book's: offset 0.1 in
    3D, 0.03 in 2D, scale 0.2, noise 25 HU."""
    on = {k: args.augmented or getattr(args, f"augment_{k}") for k in ("flip", "offset", "scale", "rotate", "noise")}
    if not any(on.values()):
        return None
    return {
        "flip": on["flip"],
        "offset": (0.1 if dims == 3 else 0.03) if on["offset"] else 0.0,
        "scale": 0.2 if on["scale"] else 0.0,
        "rotate": on["rotate"],
        "noise": 25.0 if on["noise"] else 0.0,
    }


@dataclass
class Step:
    loss: torch.Tensor  # scalar, what backward() runs on
    record: tuple  # what the accumulator keeps


class ClassificationAccumulator:
    """Per-sample losses, positive-class probabilities and labels of an
    epoch; precision, recall and F1 count probabilities above ``threshold``."""

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = threshold
        self.parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def add(self, record) -> None:
        self.parts.append(tuple(t.detach().float().cpu() if t.is_floating_point() else t.detach().cpu()
                                for t in record))

    def state(self) -> tuple[torch.Tensor, ...]:
        if not self.parts:
            return torch.zeros(0), torch.zeros(0), torch.zeros(0, dtype=torch.int64)
        return tuple(torch.cat(col) for col in zip(*self.parts))

    def merge(self, states) -> None:
        self.parts = [s for s in states if s[0].numel()]

    def result(self) -> dict:
        loss, probs, labels = self.state()
        out = metrics.classification_metrics(labels, probs, self.threshold)
        out["loss"] = float(loss.mean()) if loss.numel() else float("nan")
        return out

    def curves(self) -> dict:
        _, probs, labels = self.state()
        return {"labels": labels, "probs": probs}


class SegmentationAccumulator:
    """Summed per-sample losses and pixel counts, plus a few slices to draw."""

    def __init__(self) -> None:
        self.loss_sum = 0.0
        self.n = 0
        self.counts = torch.zeros(3, dtype=torch.int64)
        self.overlays: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def add(self, record) -> None:
        loss, counts, ct, mask, pred = record
        self.loss_sum += float(loss.detach().double().sum())
        self.n += loss.numel()
        self.counts += counts.cpu()
        if ct is not None and len(self.overlays) < SEG_OVERLAYS:
            mid = ct.shape[1] // 2
            self.overlays.append((ct[0, mid].detach().cpu(), mask[0, 0].detach().cpu(), pred[0, 0].detach().cpu()))

    def state(self):
        return self.loss_sum, self.n, self.counts, self.overlays

    def merge(self, states) -> None:
        self.loss_sum = sum(s[0] for s in states)
        self.n = sum(s[1] for s in states)
        self.counts = sum((s[2] for s in states), torch.zeros(3, dtype=torch.int64))
        self.overlays = [o for s in states for o in s[3]][:SEG_OVERLAYS]

    def result(self) -> dict:
        out = metrics.segmentation_metrics(self.counts)
        out["loss"] = self.loss_sum / self.n if self.n else float("nan")
        return out


class Task(abc.ABC):
    """Base of the three tasks; ``name`` is the subcommand."""

    name: str
    Accumulator = ClassificationAccumulator

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.defaults = DEFAULTS[self.name]

    @property
    def best_metric(self) -> str:
        return self.defaults.best_metric

    @abc.abstractmethod
    def build_model(self) -> nn.Module:
        ...

    def accumulator(self, val: bool):
        """The epoch accumulator of the training (``val`` False) or validation pass."""
        return self.Accumulator()

    def datasets(self, source: LunaSource):
        """(training set, validation set), split by series with --val-stride."""
        return self.train_dataset(source), self.val_dataset(source)

    @abc.abstractmethod
    def train_dataset(self, source: LunaSource, val_stride: int | None = None):
        """The training set; ``val_stride`` overrides --val-stride (0: every series)."""

    @abc.abstractmethod
    def val_dataset(self, source: LunaSource):
        ...

    def _split(self, val_stride: int | None) -> dict:
        a = self.args
        return {"val_stride": a.val_stride if val_stride is None else val_stride, "seed": a.seed,
                "cache_dir": a.cache_dir}

    def batch_augment(self, train_ds, rank: int):
        """An object with ``set_epoch(e)`` and ``__call__`` applied to training
        batches on the device, or None."""
        return None

    def val_batch_size(self) -> int:
        return self.args.batch_size

    @abc.abstractmethod
    def step(self, model: nn.Module, batch, device: torch.device, augment=None, keep_images: bool = False) -> Step:
        ...

    # Batches are (N, C, D, H, W) crops; SegmentationTask's are (N, C, H, W) slices.
    batch_dims = 5

    def memory_format(self) -> torch.memory_format:
        """The model's and its batches' memory format (--memory-format). `auto` is
        models/layout.py's rule, the one analysis and export follow: channels-last
        on a CPU, where oneDNN runs the book's models faster that way (Conv3d
        2-10x for cls and mal, the 2D U-Net ~1.1-1.3x; `torchlite bench --only
        "training steps"`), contiguous on CUDA."""
        fmt = self.args.memory_format
        if fmt == "contiguous":
            return torch.contiguous_format
        if fmt == "channels_last":
            return {4: torch.channels_last, 5: torch.channels_last_3d}[self.batch_dims]
        return fast_layout(self.batch_dims, self.args.device)

    def trainable_parameters(self, model: nn.Module):
        return [p for p in model.parameters() if p.requires_grad]


class _PatchTask(Task):
    """cls and mal: LunaModel on 32x48x48 patches, cross-entropy."""

    dataset_class: type

    def build_model(self) -> nn.Module:
        from torchlite.models import LunaModel

        return LunaModel()

    def _dataset_kwargs(self) -> dict:
        return {}

    def train_dataset(self, source: LunaSource, val_stride: int | None = None):
        a = self.args
        knobs = augmentation_knobs(a, 3)
        augmentation, mode = None, None
        if knobs is not None:
            from torchlite.ops.random_affine import RandomAffine3d

            augmentation, mode = RandomAffine3d(**knobs), a.augment_on
        return self.dataset_class(source, epoch_samples=a.epoch_samples, augment=mode, augmentation=augmentation,
                                  **self._split(val_stride), **self._dataset_kwargs())

    def val_dataset(self, source: LunaSource):
        return self.dataset_class(source, val=True, **self._split(None))

    def batch_augment(self, train_ds, rank: int):
        if train_ds.augment != "batch":
            return None
        from torchlite.data.datasets.batch_augment import BatchAugment3d

        # Each rank draws its own stream: same-seeded ranks would give the
        # samples of a step identical transforms.
        return BatchAugment3d(train_ds.augmentation, seed=sampling.derive_seed(self.args.seed, rank))

    def step(self, model, batch, device, augment=None, keep_images=False) -> Step:
        x = batch.crop.to(device, non_blocking=True)
        y = batch.label.to(device, non_blocking=True)
        if augment is not None:
            x = augment(x)
        x = x.contiguous(memory_format=self.memory_format())
        logits, _ = model(x)
        loss = F.cross_entropy(logits.float(), y, reduction="none")
        probs = torch.softmax(logits.detach().float(), dim=1)[:, 1]
        return Step(loss.mean(), (loss.detach(), probs, y))


class ClassificationTask(_PatchTask):
    name = "cls"
    dataset_class = CandidateDataset
    val_threshold = 0.5

    def _dataset_kwargs(self) -> dict:
        return {"ratio": self.args.balanced}

    def datasets(self, source: LunaSource):
        train, val = super().datasets(source)
        if self.args.val_threshold == "prior":
            # From the training series' counts only: no validation label is looked at.
            n_pos, n_neg = (len(train.lists[k]) for k in ("positive", "negative")) if train.ratio else (1, 1)
            self.val_threshold = metrics.prior_shift_threshold(n_pos, n_neg, train.ratio)
            log.info("validation threshold %.4f: posterior 0.5 at the training series' ratio of %d nodules to "
                     "%d non-nodules, trained at 1:%d", self.val_threshold, n_pos, n_neg, train.ratio)
        elif self.args.val_threshold is not None:
            self.val_threshold = float(self.args.val_threshold)
        return train, val

    def accumulator(self, val: bool):
        return ClassificationAccumulator(self.val_threshold if val else 0.5)


class MalignancyTask(_PatchTask):
    name = "mal"
    dataset_class = MalignancyDataset

    def build_model(self) -> nn.Module:
        model = super().build_model()
        if self.args.finetune:
            load_finetune(model, self.args.finetune, self.args.finetune_depth)
        return model


def load_finetune(model: nn.Module, path: str, depth: int) -> None:
    """The book's fine-tuning: every weight of a nodule classifier but its
    head (kept freshly initialized), then only the last ``depth`` blocks
    (counted from the head: 1 = head only) train."""
    if not 1 <= depth <= len(FINETUNE_BLOCKS):
        raise ValueError(f"--finetune-depth must be in 1..{len(FINETUNE_BLOCKS)}, got {depth}")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    state = ckpt["model"] if isinstance(ckpt, dict) and "model" in ckpt else ckpt
    if not isinstance(state, dict):
        raise ValueError(f"--finetune {path}: not a checkpoint or a state dict")
    kept = {k: v for k, v in state.items() if not k.startswith("head_linear.")}
    missing, unexpected = model.load_state_dict(kept, strict=False)
    if unexpected or any(not k.startswith("head_linear.") for k in missing):
        raise ValueError(f"--finetune {path}: not a LunaModel state (missing {missing}, unexpected {unexpected})")
    trained = FINETUNE_BLOCKS[:depth]
    for name, p in model.named_parameters():
        p.requires_grad_(name.split(".")[0] in trained)
    log.info("fine-tuning %s from %s", ", ".join(trained), path)


class SegmentationAugment:
    """Chapter 13's batch augmentation (RandomAffine2d, a transform per
    sample) of slices and masks, drawn from a generator seeded by
    (seed, epoch, rank) that advances batch by batch."""

    def __init__(self, knobs: dict, seed: int) -> None:
        from torchlite.ops.random_affine import RandomAffine2d

        self.affine = RandomAffine2d(**knobs)
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.generator = sampling.generator(self.seed, epoch, sampling.BATCH_AUGMENT)

    def __call__(self, ct: torch.Tensor, mask: torch.Tensor):
        return self.affine(ct, mask, generator=self.generator)


class SegmentationTask(Task):
    name = "seg"
    batch_dims = 4
    Accumulator = SegmentationAccumulator

    def build_model(self) -> nn.Module:
        from torchlite.models import UNetWrapper

        return UNetWrapper()

    def train_dataset(self, source: LunaSource, val_stride: int | None = None):
        return SegmentationDataset(source, epoch_samples=self.args.epoch_samples, **self._split(val_stride))

    def val_dataset(self, source: LunaSource):
        return SegmentationDataset(source, val=True, **self._split(None))

    def batch_augment(self, train_ds, rank: int):
        knobs = augmentation_knobs(self.args, 2)
        return None if knobs is None else SegmentationAugment(knobs, sampling.derive_seed(self.args.seed, rank))

    def val_batch_size(self) -> int:
        return 1  # whole slices: scans differ in size

    def step(self, model, batch, device, augment=None, keep_images=False) -> Step:
        from torchlite.ops.dice import dice_loss

        ct = batch.ct.to(device, non_blocking=True)
        mask = batch.mask.to(device, non_blocking=True)
        if augment is not None:
            ct, mask = augment(ct, mask)
        ct = ct.contiguous(memory_format=self.memory_format())
        pred = model(ct)
        loss = dice_loss(pred.float(), mask, fn_weight=SEG_FN_WEIGHT)
        counts = metrics.segmentation_counts(pred, mask)
        images = (ct, mask, pred.detach().float()) if keep_images else (None, None, None)
        return Step(loss.mean(), (loss.detach(), counts, *images))


TASK_CLASSES = {t.name: t for t in (ClassificationTask, SegmentationTask, MalignancyTask)}


def make_task(args: argparse.Namespace) -> Task:
    return TASK_CLASSES[args.task](args)
