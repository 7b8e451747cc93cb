"""Whole training steps: torchlite's training loop against the book's loop shape.

A step is what one iteration of ``torchlite train`` costs: wait for the
next batch from the DataLoader (2 persistent workers), augment, forward,
backward, optimizer step. One call runs one "epoch" of ``STEPS`` steps on
fresh indices, so the workers cannot have prepared a call's batches while
another case was being timed (the first batch of every call is waited for,
as at the start of every epoch). The time reported is per call; samples per
second are ``STEPS * batch / time``.

The book's loop shape, generous to the book:

- cls (chapter 12): the Dataset augments each sample (``affine_grid`` +
  ``grid_sample`` + noise) of crops already in memory (the book reads them
  from its diskcache store), the model in PyTorch's default memory format,
  SGD lr 0.001 momentum 0.99, cross-entropy;
- seg (chapter 13): the Dataset takes a random 64x64 part of 7x96x96 chunks
  already in memory (the book's cached chunks), the batch is augmented in
  the loop (``affine_grid`` + ``grid_sample`` of slices and masks, noise),
  the Dice loss is the book's two unfused calls, Adam.

torchlite: the ``torchlite train`` code itself (``make_task``: the datasets,
the batch augmentation, the model in the task's memory format, the step
with the fused operators), on the same synthetic scans. Each case also
reports the share of its step time spent waiting for data (goal < 10%).
"""

from __future__ import annotations

import functools
import math
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from torchlite.bench.cases import training_samples as samples
from torchlite.bench.registry import Case, register

STEPS = 4
WORKERS = 2
CLS_BATCH = 32  # the book's
SEG_BATCH = 16  # the book's
WAIT_LIMIT = {"data wait share": 0.10}  # issue 4, item 7
GOAL = 1.5  # issue 4, item 7: samples per second against the book's loop shape

CLS_GROUP = (f"cls training steps: batch {CLS_BATCH}, {STEPS} steps/call, {WORKERS} workers, flip+offset+scale+"
             f"rotate+noise, {samples.N_SCANS} synthetic 512x512 scans")
SEG_GROUP = (f"seg training steps: batch {SEG_BATCH} x 7x64x64, {STEPS} steps/call, {WORKERS} workers, "
             f"flip+offset+scale+rotate+noise, {samples.N_SCANS} synthetic 512x512 scans")
BOOK_CLS = "reference: book's loop (per-sample augmentation, contiguous model)"
BOOK_SEG = "reference: book's loop (batch affine_grid+grid_sample, unfused Dice)"


class _Epochs(Sampler):
    """Each epoch (each iterator) the next ``n`` indices of an endless walk."""

    def __init__(self, n: int) -> None:
        self.n, self.start = n, 0

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        start, self.start = self.start, self.start + self.n
        return iter(range(start, start + self.n))


class _TimedLoop:
    """One call: one epoch of STEPS steps; keeps the time spent in ``next()``."""

    def __init__(self, dataset: Dataset, batch_size: int, step) -> None:
        self.loader = DataLoader(dataset, batch_size=batch_size, sampler=_Epochs(STEPS * batch_size),
                                 num_workers=WORKERS, persistent_workers=True)
        self.step = step
        self.wait_s = self.total_s = 0.0

    def __call__(self):
        t_start = time.perf_counter()
        it = iter(self.loader)
        loss = None
        while True:
            t0 = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                break
            self.wait_s += time.perf_counter() - t0
            loss = self.step(batch)
        self.total_s += time.perf_counter() - t_start
        return loss

    def bench_metrics(self) -> dict[str, float]:
        return {"data wait share": self.wait_s / self.total_s if self.total_s else float("nan")}


def _sgd_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> torch.Tensor:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


# --- torchlite: the training command's own pieces ---------------------------------


def _torchlite_loop(task_name: str, extra: list[str]):
    from torchlite.cli import build_parser
    from torchlite.train.command import _fill_defaults
    from torchlite.train.loop import make_optimizer
    from torchlite.train.tasks import make_task

    batch = CLS_BATCH if task_name == "cls" else SEG_BATCH
    args = build_parser().parse_args(
        ["train", task_name, "--data", str(samples._root()), "--augmented", "--batch-size", str(batch),
         "--num-workers", str(WORKERS), "--device", "cpu", "--no-tb", *extra]
    )
    _fill_defaults(args)
    task = make_task(args)
    train_ds = task.train_dataset(samples._source(), val_stride=0)  # both scans train
    augment = task.batch_augment(train_ds, 0)
    torch.manual_seed(0)
    model = task.build_model()
    model = model.to(memory_format=task.memory_format())
    model.train()
    optimizer = make_optimizer(args.optimizer, task.trainable_parameters(model), args.lr)
    device = torch.device("cpu")
    amp = torch.autocast("cpu", dtype=torch.bfloat16) if args.amp else None

    def step(b):
        if amp is None:
            return _sgd_step(model, optimizer, task.step(model, b, device, augment).loss)
        with amp:
            loss = task.step(model, b, device, augment).loss
        return _sgd_step(model, optimizer, loss)

    return _TimedLoop(train_ds, batch, step)


def _make_torchlite(task_name: str, *extra: str):
    return lambda quick, device: _torchlite_loop(task_name, list(extra))


# --- the book's loop shape ---------------------------------------------------------


class _BookCandidates(Dataset):
    """Chapter 12's balanced training set on crops in memory, augmented per sample."""

    def __init__(self, crops: list, labels: list) -> None:
        self.crops, self.labels = crops, labels

    def __len__(self) -> int:
        return 10**7

    def __getitem__(self, ndx: int):
        import random

        i = ndx % len(self.crops)
        return samples._book_augment(self.crops[i], random.Random(ndx)), self.labels[i]


@functools.lru_cache(maxsize=1)
def _book_crops() -> tuple[list, list]:
    from torchlite.data.datasets import CandidateDataset

    plain = CandidateDataset(samples._source(), val_stride=0, ratio=1, epoch_samples=10**7)
    items = [plain[i] for i in range(CLS_BATCH * 4)]
    return [it.crop[0].numpy() for it in items], [int(it.label) for it in items]


def _make_book_cls(quick: bool, device: str):
    from torchlite.models import LunaModel

    torch.manual_seed(0)
    model = LunaModel().train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.99)

    def step(b):
        x, y = b
        logits, _ = model(x)
        return _sgd_step(model, optimizer, F.cross_entropy(logits, y))

    return _TimedLoop(_BookCandidates(*_book_crops()), CLS_BATCH, step)


class _BookSlices(Dataset):
    """Chapter 13's TrainingLuna2dSegmentationDataset on cached 7x96x96 chunks:
    a random 64x64 part of one."""

    def __init__(self, chunks: list) -> None:
        self.chunks = chunks

    def __len__(self) -> int:
        return 10**7

    def __getitem__(self, ndx: int):
        import random

        ct, mask = self.chunks[ndx % len(self.chunks)]
        rng = random.Random(ndx)
        r, c = rng.randrange(0, 32), rng.randrange(0, 32)
        return ct[:, r:r + 64, c:c + 64].clone(), mask[:, r:r + 64, c:c + 64].clone()


@functools.lru_cache(maxsize=1)
def _book_chunks() -> list:
    from torchlite.data.datasets import SegmentationDataset

    chunked = SegmentationDataset(samples._source(), val_stride=0, epoch_samples=10**7, patch_size=96)
    return [(it.ct, it.mask.long()) for it in (chunked[i] for i in range(SEG_BATCH * 4))]


def _book_seg_theta(n: int, generator: torch.Generator) -> torch.Tensor:
    """Chapter 13's SegmentationAugmentation._build2dTransformMatrix, per sample."""
    thetas = []
    for _ in range(n):
        u = lambda: float(torch.rand((), generator=generator))  # noqa: E731
        t = torch.eye(3)
        for i in range(2):
            if u() > 0.5:
                t[i, i] *= -1
            t[2, i] = 0.03 * (u() * 2 - 1)
            t[i, i] *= 1.0 + 0.2 * (u() * 2 - 1)
        a = u() * math.pi * 2
        s, c = math.sin(a), math.cos(a)
        t @= torch.tensor([[c, -s, 0], [s, c, 0], [0, 0, 1]])
        thetas.append(t)
    # As the book: the offset sits in row 2, which the (2, 3) theta drops (its offset is never applied).
    return torch.stack(thetas)[:, :2]


def _make_book_seg(quick: bool, device: str):
    from torchlite.models import UNetWrapper
    from torchlite.ops.reference import dice_loss_reference

    torch.manual_seed(0)
    model = UNetWrapper().train()
    optimizer = torch.optim.Adam(model.parameters())
    generator = torch.Generator().manual_seed(0)

    def step(b):
        ct, mask = b
        theta = _book_seg_theta(ct.shape[0], generator)
        grid = F.affine_grid(theta, list(ct.shape), align_corners=False)
        ct = F.grid_sample(ct, grid, padding_mode="border", align_corners=False)
        ct = ct + torch.randn_like(ct) * 25.0
        mask = F.grid_sample(mask.float(), grid, padding_mode="border", align_corners=False) > 0.5
        pred = model(ct)
        loss = dice_loss_reference(pred, mask, fn_weight=8.0).mean()
        return _sgd_step(model, optimizer, loss)

    return _TimedLoop(_BookSlices(_book_chunks()), SEG_BATCH, step)


_GOALS_CLS = {BOOK_CLS: GOAL}
_GOALS_SEG = {BOOK_SEG: GOAL}

register(Case(CLS_GROUP, BOOK_CLS, _make_book_cls))
register(Case(CLS_GROUP, "torchlite train cls (sample_patches3d in workers, channels-last)",
              _make_torchlite("cls"), targets=_GOALS_CLS, limits=WAIT_LIMIT))
register(Case(CLS_GROUP, "torchlite train cls --amp (bfloat16 autocast)",
              _make_torchlite("cls", "--amp"), targets=_GOALS_CLS, limits=WAIT_LIMIT))
register(Case(SEG_GROUP, BOOK_SEG, _make_book_seg))
register(Case(SEG_GROUP, "torchlite train seg (affine2d, dice_loss, channels-last)", _make_torchlite("seg"),
              targets=_GOALS_SEG, limits=WAIT_LIMIT))
register(Case(SEG_GROUP, "torchlite train seg --amp (bfloat16 autocast)", _make_torchlite("seg", "--amp"),
              targets=_GOALS_SEG, limits=WAIT_LIMIT))
register(Case(SEG_GROUP, "torchlite train seg --memory-format contiguous (the book's layout)",
              _make_torchlite("seg", "--memory-format", "contiguous"), limits=WAIT_LIMIT))
