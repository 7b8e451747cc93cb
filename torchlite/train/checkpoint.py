"""Checkpoints: ``OUT/last.pt`` every epoch, ``OUT/best.pt`` on a better
validation score; both written to a temporary name and renamed.

A checkpoint holds what an identical continuation needs: model and
optimizer (and AMP scaler) state, the learning-rate scheduler's step count,
with ``--ema`` the weight average and its update count (``model`` is then
the average, what validation ran, and ``train_model`` the trained weights), the epoch finished, samples seen, the
best score so far, and the RNG states of torch (CPU and CUDA), numpy and
Python's ``random``. Datasets and batch augmentations draw from generators
seeded by (seed, epoch, index), so restoring the epoch restores them.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import numpy as np
import torch

from torchlite import __version__
from torchlite.utils.atomic import atomic_save_torch, atomic_write

log = logging.getLogger(__name__)

LAST, BEST, METRICS = "last.pt", "best.pt", "metrics.jsonl"
# Arguments that may change between a run and its --resume.
RESUMABLE_CHANGES = {"resume", "epochs", "num_workers", "tb", "no_progress", "verbose", "out"}


def rng_states() -> dict:
    states = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save(path: Path, *, task: str, model, optimizer, scaler, epoch: int, samples_seen: int, args: dict,
         metrics: dict, best: dict, scheduler=None, ema=None, train_model=None) -> None:
    """``model`` is what validation ran (the weight average with --ema);
    with --ema, ``train_model`` is the trained model and ``ema`` the
    average's state."""
    extra = {}
    if ema is not None:
        extra = {"train_model": train_model.state_dict(), "ema": ema.state_dict()}
    atomic_save_torch(
        {
            "task": task,
            "model": model.state_dict(),
            **extra,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "scaler": scaler.state_dict() if scaler is not None else None,
            "epoch": epoch,
            "samples_seen": samples_seen,
            "args": args,
            "torchlite_version": __version__,
            "metrics": metrics,
            "best": best,
            "rng": rng_states(),
        },
        path,
    )


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def check_resume_args(saved: dict, current: dict) -> None:
    """A resumed run must train the same thing: refuse changed arguments
    other than the epoch count and how progress is shown."""
    changed = {k: (saved.get(k), current.get(k)) for k in set(saved) | set(current)
               if k not in RESUMABLE_CHANGES and not k.startswith("_") and saved.get(k) != current.get(k)}
    if changed:
        detail = ", ".join(f"--{k.replace('_', '-')}: {a!r} -> {b!r}" for k, (a, b) in sorted(changed.items()))
        raise ValueError(f"--resume with different arguments than the checkpoint's: {detail}")


def read_metrics(out: Path, upto_epoch: int) -> list[str]:
    """The metrics.jsonl lines of epochs <= upto_epoch (a killed run may have
    written later ones before its checkpoint)."""
    path = out / METRICS
    if not path.is_file():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    return [line for line in lines if json.loads(line)["epoch"] <= upto_epoch]


def write_metrics(out: Path, lines: list[str]) -> None:
    with atomic_write(out / METRICS, "w") as f:
        f.write("".join(line + "\n" for line in lines))
