"""Learning-rate schedules, stepped once per optimizer step (``--lr-schedule``).

- ``constant``: the book's: ``--lr`` throughout;
- ``cosine``: an optional linear warmup from ``--lr`` / W to ``--lr`` over
  the first W steps (``--lr-warmup``, in epochs), then cosine decay from
  ``--lr`` to 0 over the rest of the horizon (``--lr-horizon`` epochs,
  default ``--epochs``):

  ``lr(t) = lr * (t + 1) / W``                                  for t < W,
  ``lr(t) = lr * (1 + cos(pi * (t - W) / (T - W))) / 2``        for W <= t < T,

  with t the number of optimizer steps taken, T = horizon x steps per epoch
  (0 past T). The scheduler's step count is in ``last.pt``; the horizon is
  an argument, so a run trained in pieces (``--epochs 5``, then ``--resume
  --epochs 10``) needs ``--lr-horizon 10`` from the start.
"""

from __future__ import annotations

import math

import torch

SCHEDULES = ("constant", "cosine")


class LrFactor:
    """The multiplier of ``--lr`` after ``step`` optimizer steps (LambdaLR's
    lr_lambda; an object, so its settings travel with the scheduler's state)."""

    def __init__(self, schedule: str, total_steps: int, warmup_steps: int = 0) -> None:
        if schedule not in SCHEDULES:
            raise ValueError(f"--lr-schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
        if total_steps < 1 or not 0 <= warmup_steps < total_steps:
            raise ValueError(f"--lr-warmup must be shorter than the schedule: {warmup_steps} warmup steps "
                             f"of {total_steps}")
        self.schedule, self.total_steps, self.warmup_steps = schedule, total_steps, warmup_steps

    def __call__(self, step: int) -> float:
        if self.schedule == "constant":
            return 1.0
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if step >= self.total_steps:
            return 0.0
        progress = (step - self.warmup_steps) / (self.total_steps - self.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * progress))


def make_scheduler(optimizer: torch.optim.Optimizer, schedule: str, steps_per_epoch: int, horizon_epochs: int,
                   warmup_epochs: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR over ``horizon_epochs`` epochs of ``steps_per_epoch`` steps."""
    if schedule == "constant":  # no horizon: a constant run's --epochs may grow on --resume
        return torch.optim.lr_scheduler.LambdaLR(optimizer, LrFactor(schedule, 1))
    factor = LrFactor(schedule, horizon_epochs * steps_per_epoch, round(warmup_epochs * steps_per_epoch))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
