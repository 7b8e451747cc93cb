"""Exponential moving average of the weights (``--ema DECAY``).

After every optimizer step each floating-point parameter and buffer of
the averaged copy moves toward the trained model's:

    avg <- d * avg + (1 - d) * value,   d = min(DECAY, (1 + n) / (10 + n))

with n the number of updates before this one (TensorFlow's
``ExponentialMovingAverage(num_updates=...)`` warmup: early on, when the
weights are far from where they settle, the average follows them closely
instead of remembering the random initialization for ~1 / (1 - DECAY)
steps). BatchNorm's running mean and variance are averaged the same way
(as timm's ModelEma does), so they describe activations of weights near the
averaged ones; integer buffers (``num_batches_tracked``) are copied.

Validation, ``best.pt`` and the ``model`` entry of both checkpoints use the
averaged weights; ``last.pt`` keeps the trained ones as ``train_model``
and the update count as ``ema``, which ``--resume`` restores.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn


def warmed_decay(decay: float, updates: int) -> float:
    """The decay of update number ``updates + 1``."""
    return min(decay, (1.0 + updates) / (10.0 + updates))


class ModelEma:
    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"--ema must be in (0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = warmed_decay(self.decay, self.updates)
        live = model.state_dict()
        for name, avg in self.module.state_dict().items():
            value = live[name].detach()
            if avg.is_floating_point():
                avg.lerp_(value.to(avg.dtype), 1.0 - d)
            else:
                avg.copy_(value)
        self.updates += 1

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates}

    def load_state_dict(self, model_state: dict, state: dict) -> None:
        self.module.load_state_dict(model_state)
        self.updates = state["updates"]
