"""The epoch loop shared by cls, seg and mal.

Each epoch: train over the epoch's samples (this rank's shard), validate
over the validation series, gather the metrics on rank 0, which appends
them to ``OUT/metrics.jsonl``, logs them (and to TensorBoard) and writes
``OUT/last.pt`` and, on a better validation score, ``OUT/best.pt``.

Epochs are numbered from 1, as the book does; datasets get
``set_epoch(epoch)`` so their order and augmentation depend only on
(seed, epoch, index), and a run resumed from the checkpoint of epoch e
continues exactly as the uninterrupted run would (same weights, bit for
bit, on the same machine and thread count).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from torchlite.train import checkpoint, distributed
from torchlite.train.config import SGD_MOMENTUM
from torchlite.train.ema import ModelEma
from torchlite.train.schedule import make_scheduler
from torchlite.train.tasks import Task

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=SGD_MOMENTUM)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    raise ValueError(f"--optimizer must be 'sgd' or 'adam', got {name!r}")


def _json_safe(values: dict) -> dict:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in values.items()}


class Trainer:
    def __init__(self, task: Task, args: argparse.Namespace, source, world: distributed.World) -> None:
        self.task, self.args, self.world = task, args, world
        self.device = torch.device(args.device if args.device != "cuda" else f"cuda:{world.local_rank}")
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.out = Path(args.out)
        seed_everything(args.seed)
        self.train_ds, self.val_ds = task.datasets(source)
        self.augment = task.batch_augment(self.train_ds, world.rank)
        model = task.build_model().to(self.device)
        model = model.to(memory_format=task.memory_format())
        if world.distributed:
            # Before the optimizer: conversion replaces the BatchNorm parameters.
            model = distributed.convert_batchnorm(model, self.device)
        self.optimizer = make_optimizer(args.optimizer, task.trainable_parameters(model), args.lr)
        # Every rank takes the same number of steps (ShardSampler drops the uneven tail).
        steps_per_epoch = math.ceil(len(distributed.ShardSampler(len(self.train_ds), world)) / args.batch_size)
        self.scheduler = make_scheduler(self.optimizer, args.lr_schedule, steps_per_epoch,
                                        args.lr_horizon or args.epochs, args.lr_warmup)
        # The average of the plain module (DDP keeps the replicas equal, so every rank's is the same).
        self.ema = ModelEma(model, args.ema) if args.ema else None
        if world.distributed:
            model = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self.model = model
        self.amp_dtype = None
        if args.amp:
            self.amp_dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        self.scaler = torch.amp.GradScaler("cuda") if args.amp and self.device.type == "cuda" else None
        self.epoch, self.samples_seen = 0, 0
        self.best = {"metric": task.best_metric, "value": None, "epoch": None}
        self.metric_lines: list[str] = []
        self.tb = None
        if world.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            if args.tb:
                from torchlite.train.logging_tb import TensorBoardLogger

                self.tb = TensorBoardLogger(args.tb)

    # --- state ------------------------------------------------------------------
    def resume(self) -> None:
        path = self.out / checkpoint.LAST
        if not path.is_file():
            raise FileNotFoundError(f"--resume: no {path} (run without --resume first)")
        ckpt = checkpoint.load(path)
        if ckpt.get("task") != self.task.name:
            raise ValueError(f"--resume: {path} is a {ckpt.get('task')!r} checkpoint, not {self.task.name!r}")
        checkpoint.check_resume_args(ckpt["args"], vars(self.args))
        if self.ema is not None:
            distributed.unwrap(self.model).load_state_dict(ckpt["train_model"])
            self.ema.load_state_dict(ckpt["model"], ckpt["ema"])
        else:
            distributed.unwrap(self.model).load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if ckpt.get("scheduler") is not None:
            self.scheduler.load_state_dict(ckpt["scheduler"])
        if self.scaler is not None and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.epoch, self.samples_seen, self.best = ckpt["epoch"], ckpt["samples_seen"], ckpt["best"]
        checkpoint.set_rng_states(ckpt["rng"])
        if self.world.is_main:
            self.metric_lines = checkpoint.read_metrics(self.out, self.epoch)
        log.info("resumed from %s: epoch %d done, %d samples seen", path, self.epoch, self.samples_seen)

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _loader(self, ds, batch_size: int, sampler) -> DataLoader:
        return DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=self.args.num_workers,
                          pin_memory=self.device.type == "cuda")

    # --- epochs -----------------------------------------------------------------
    def train_epoch(self, epoch: int):
        self.model.train()
        self.train_ds.set_epoch(epoch)
        if self.augment is not None:
            self.augment.set_epoch(epoch)
        sampler = distributed.ShardSampler(len(self.train_ds), self.world)
        loader = self._loader(self.train_ds, self.args.batch_size, sampler)
        acc = self.task.accumulator(val=False)
        bar = tqdm(loader, desc=f"{self.task.name} E{epoch} train", unit="batch",
                   disable=self.args.no_progress or not self.world.is_main, dynamic_ncols=True)
        for batch in bar:
            with self._autocast():
                step = self.task.step(self.model, batch, self.device, self.augment)
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.scale(step.loss).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                step.loss.backward()
                self.optimizer.step()
            self.scheduler.step()
            if self.ema is not None:
                self.ema.update(distributed.unwrap(self.model))
            acc.add(step.record)
            bar.set_postfix(loss=f"{float(step.loss.detach()):.4f}")
        self.samples_seen += len(sampler) * self.world.size
        return acc

    @torch.no_grad()
    def validate(self, epoch: int):
        model = self.eval_model()
        model.eval()
        indices = range(self.world.rank, len(self.val_ds), self.world.size)
        loader = self._loader(self.val_ds, self.task.val_batch_size(), list(indices))
        acc = self.task.accumulator(val=True)
        bar = tqdm(loader, desc=f"{self.task.name} E{epoch} val", unit="batch",
                   disable=self.args.no_progress or not self.world.is_main, dynamic_ncols=True)
        for batch in bar:
            with self._autocast():
                acc.add(self.task.step(model, batch, self.device, keep_images=True).record)
        return acc

    def eval_model(self) -> nn.Module:
        """What validation runs and checkpoints call ``model``: the weight
        average with --ema, else the trained model (unwrapped: no DDP
        collectives, validation shards differ in length)."""
        return self.ema.module if self.ema is not None else distributed.unwrap(self.model)

    def _merged(self, acc):
        states = distributed.gather(acc.state(), self.world)
        acc.merge(states)
        return acc

    def run(self) -> dict:
        results = {}
        for epoch in range(self.epoch + 1, self.args.epochs + 1):
            t0 = time.perf_counter()
            train_acc = self._merged(self.train_epoch(epoch))
            val_acc = self._merged(self.validate(epoch))
            self.epoch = epoch
            if self.world.is_main:
                results = self._report(epoch, train_acc, val_acc, time.perf_counter() - t0)
        if self.tb is not None:
            self.tb.close()
        return results

    def _report(self, epoch: int, train_acc, val_acc, seconds: float) -> dict:
        train, val = train_acc.result(), val_acc.result()
        record = {"epoch": epoch, "samples_seen": self.samples_seen, "seconds": round(seconds, 3),
                  "train": _json_safe(train), "val": _json_safe(val)}
        self.metric_lines.append(json.dumps(record))
        checkpoint.write_metrics(self.out, self.metric_lines)
        key = self.task.best_metric
        log.info("E%d %s train loss %.4f %s %.4f | val loss %.4f %s %.4f (%.1f s)", epoch, self.task.name,
                 train["loss"], key, train[key], val["loss"], key, val[key], seconds)
        if self.tb is not None:
            self.tb.log_epoch("train", self.task.name, self.samples_seen, train, train_acc)
            self.tb.log_epoch("val", self.task.name, self.samples_seen, val, val_acc)
        score = val[key]
        better = math.isfinite(score) and (self.best["value"] is None or score > self.best["value"])
        if better:
            self.best = {"metric": key, "value": score, "epoch": epoch}
        state = dict(task=self.task.name, model=self.eval_model(), optimizer=self.optimizer, scaler=self.scaler,
                     scheduler=self.scheduler, ema=self.ema,
                     train_model=distributed.unwrap(self.model) if self.ema is not None else None, epoch=epoch,
                     samples_seen=self.samples_seen, args=vars(self.args),
                     metrics=record, best=self.best)
        checkpoint.save(self.out / checkpoint.LAST, **state)
        if better:
            checkpoint.save(self.out / checkpoint.BEST, **state)
            log.info("E%d: best %s so far (%.4f): %s", epoch, key, score, self.out / checkpoint.BEST)
        return record
