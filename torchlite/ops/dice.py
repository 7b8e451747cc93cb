"""Soft Dice loss, fused: ``dice_loss`` and the ``DiceLoss`` module.

The book's segmentation training (chapter 13) computes

    diceLoss(prediction, label).mean() + fnLoss.mean() * 8,
    fnLoss = diceLoss(prediction * label, label)

as a dozen full-size tensor operations forward and as many backward. Both
terms depend on the prediction only through three per-sample sums
(sum p*l, sum p, sum p*l^2, plus sum l), so ``torch.ops.torchlite.dice_loss``
reads pred and label once forward and label once backward; a bool mask is
read as bytes. ``dice_loss(p, l, fn_weight=8).mean()`` is the book's loss.

Dtypes: pred float32, float16, bfloat16 or float64; label bool, uint8 or a
floating dtype (soft labels are handled exactly, including the p*l^2 sum
that the recall term needs). Sums are accumulated in float32 (float64 for
float64 pred) in an order fixed by the shape, so results do not depend on
the thread count. The loss comes out in that accumulation dtype, float32
for half-precision pred (a float16 loss would round away the changes that
training follows); the gradient comes back in pred's dtype. Labels get no
gradient, and the gradient cannot itself be differentiated (both raise).
"""

from __future__ import annotations

import torch
from torch import nn

from torchlite.ops import _library

_library.load()

__all__ = ["dice_loss", "DiceLoss"]

_PRED_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def dice_loss(pred: torch.Tensor, label: torch.Tensor, *, eps: float = 1.0, fn_weight: float = 0.0) -> torch.Tensor:
    """Per-sample soft Dice loss, shape (N,).

    ``1 - (2*sum(p*l) + eps) / (sum(p) + sum(l) + eps)`` over all dimensions
    but the first, plus ``fn_weight * dice(pred * label, label)`` (the
    book's false-negative term, which only rewards recall).

    Args:
        pred: (N, ...) probabilities (e.g. after a sigmoid).
        label: same shape as pred (no broadcasting), bool/uint8/float.
        eps: smoothing added to numerator and denominator; keeps the loss
            finite (0) when both pred and label are empty. Must be >= 0.
        fn_weight: weight of the recall term; the book uses 8.
    """
    return torch.ops.torchlite.dice_loss(pred, label, eps, fn_weight)


class DiceLoss(nn.Module):
    """``dice_loss`` as a module, reduced over the batch.

    ``DiceLoss(fn_weight=8.0)(pred, label)`` is the book's
    ``diceLoss(p, l).mean() + fnLoss.mean() * 8``.

    Args:
        eps: see ``dice_loss``.
        fn_weight: see ``dice_loss``.
        reduction: "mean" (default), "sum", or "none" for the (N,) losses.
    """

    def __init__(self, eps: float = 1.0, fn_weight: float = 0.0, reduction: str = "mean"):
        super().__init__()
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"DiceLoss: `reduction` must be 'mean', 'sum' or 'none', got {reduction!r}")
        if not eps >= 0:
            raise ValueError(f"DiceLoss: `eps` must be >= 0, got {eps!r}")
        self.eps = float(eps)
        self.fn_weight = float(fn_weight)
        self.reduction = reduction

    def forward(self, pred: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        loss = dice_loss(pred, label, eps=self.eps, fn_weight=self.fn_weight)
        if self.reduction == "mean":
            return loss.mean()
        if self.reduction == "sum":
            return loss.sum()
        return loss

    def extra_repr(self) -> str:
        return f"eps={self.eps}, fn_weight={self.fn_weight}, reduction={self.reduction!r}"


# --- fake (meta) kernels: shapes and dtypes for torch.compile / export -------


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _check_inputs(pred: torch.Tensor, label: torch.Tensor) -> None:
    # The kernels check everything; device and shapes are checked here too:
    # a CPU pred with a meta label dispatches to this fake kernel, and a
    # traced graph should fail at trace time, not on its first run.
    torch._check(
        pred.device == label.device,
        lambda: f"torchlite.dice_loss: `label` is on {label.device} but `pred` is on {pred.device}; "
        "move both to the same device",
    )
    torch._check(pred.dim() >= 1, lambda: "torchlite.dice_loss: `pred` must have a batch dimension, shape (N, ...)")
    torch._check(
        pred.shape == label.shape,
        lambda: f"torchlite.dice_loss: `pred` and `label` must have the same shape (no broadcasting), "
        f"got pred {list(pred.shape)} and label {list(label.shape)}",
    )


@torch.library.register_fake("torchlite::dice_loss")
def _dice_loss_fake(pred, label, eps=1.0, fn_weight=0.0):
    _check_inputs(pred, label)
    return pred.new_empty((pred.shape[0],), dtype=_acc_dtype(pred.dtype))


@torch.library.register_fake("torchlite::_dice_loss_forward")
def _dice_loss_forward_fake(pred, label, eps, fn_weight):
    _check_inputs(pred, label)
    acc = _acc_dtype(pred.dtype)
    return pred.new_empty((pred.shape[0],), dtype=acc), pred.new_empty((pred.shape[0], 4), dtype=acc)


@torch.library.register_fake("torchlite::_dice_loss_backward")
def _dice_loss_backward_fake(grad, sums, label, eps, fn_weight, dtype):
    return label.new_empty(label.shape, dtype=dtype)
