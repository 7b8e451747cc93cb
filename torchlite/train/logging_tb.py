"""TensorBoard: one writer per half (``TB/train``, ``TB/val``), the book's
layout; the step is the number of training samples seen so far.

Scalars are every metric of the epoch; classification adds a PR curve and
histograms of the positive-class probability for positive and negative
samples; segmentation adds overlays of validation slices (CT in gray,
label in green, prediction in red).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch

log = logging.getLogger(__name__)

_COUNTS = {"n", "n_pos", "tp", "fp", "fn", "tn"}


class TensorBoardLogger:
    def __init__(self, log_dir: str | Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writers = {half: SummaryWriter(str(Path(log_dir) / half)) for half in ("train", "val")}

    def log_epoch(self, half: str, task: str, step: int, values: dict, accumulator) -> None:
        w = self.writers[half]
        for key, value in values.items():
            if key not in _COUNTS and isinstance(value, float) and math.isfinite(value):
                w.add_scalar(f"{task}/{key}", value, step)
        curves = getattr(accumulator, "curves", None)
        if curves is not None:
            c = curves()
            labels, probs = c["labels"].bool(), c["probs"].float()
            if labels.numel():
                w.add_pr_curve(f"{task}/pr", labels, probs, step)
                for name, sel in (("positive", labels), ("negative", ~labels)):
                    if sel.any():
                        w.add_histogram(f"{task}/prob_{name}", probs[sel], step, bins=torch.linspace(0, 1, 51).numpy())
        for i, (ct, mask, pred) in enumerate(getattr(accumulator, "overlays", [])):
            w.add_image(f"{task}/overlay_{i}", overlay(ct, mask, pred), step, dataformats="HWC")
        w.flush()

    def close(self) -> None:
        for w in self.writers.values():
            w.close()


def overlay(ct: torch.Tensor, mask: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """(H, W, 3) float in [0, 1]: CT (HU -1000..1000) in gray, the label
    added in green, the prediction (> 0.5) in red."""
    gray = ((ct.float() + 1000) / 2000).clamp(0, 1) * 0.5
    img = gray[..., None].repeat(1, 1, 3)
    img[..., 1] += mask.float() * 0.5
    img[..., 0] += (pred.float() > 0.5).float() * 0.5
    return img.clamp(0, 1)
