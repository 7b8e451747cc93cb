"""Per-epoch metrics, computed in torch (no sklearn).

Classification (cls, mal): per-class accuracy, precision, recall, F1 and ROC
AUC of the positive-class probability. Segmentation: pixel counts over the
whole epoch (true positives, false positives, false negatives) giving Dice,
recall and precision. The book counts segmentation false positives as
``prediction * ~label`` on float predictions and reports negative counts
when no augmentation binarizes the labels; here every count is taken on
booleans, so each is a count of pixels and never negative.
"""

from __future__ import annotations

import math

import torch


def _ratio(num: float, den: float) -> float:
    """num / den, 0 when den is 0 (precision of a model that marks nothing)."""
    return float(num) / float(den) if den else 0.0


def roc_auc(labels: torch.Tensor, scores: torch.Tensor) -> float:
    """Area under the ROC curve: the probability that a random positive
    scores above a random negative, ties counting one half (Mann-Whitney U
    with average ranks). NaN when one class is absent."""
    labels = labels.reshape(-1).bool()
    scores = scores.reshape(-1).double()
    n_pos = int(labels.sum())
    n_neg = labels.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    order = torch.argsort(scores)
    sorted_scores = scores[order]
    _, counts = torch.unique_consecutive(sorted_scores, return_counts=True)
    ends = torch.cumsum(counts, 0).double()  # 1-based rank of each tie group's last member
    avg_rank_per_group = ends - (counts.double() - 1) / 2
    ranks = torch.empty_like(scores)
    ranks[order] = torch.repeat_interleave(avg_rank_per_group, counts)
    u = float(ranks[labels].sum()) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)


def prior_shift_threshold(n_pos: int, n_neg: int, ratio: int) -> float:
    """The probability threshold of a classifier trained on ``ratio``
    negatives per positive that means posterior 0.5 at the natural ratio
    ``n_neg / n_pos`` (Bayes' rule under prior shift: the natural odds are
    the balanced ones times ``ratio * n_pos / n_neg``), ``n_neg / (n_neg +
    ratio * n_pos)``; 0.5 for unbalanced training (``ratio`` 0)."""
    if ratio == 0:
        return 0.5
    if n_pos < 1 or n_neg < 1 or ratio < 0:
        raise ValueError(f"prior shift needs positives, negatives and ratio >= 0, got {n_pos}, {n_neg}, {ratio}")
    return n_neg / (n_neg + ratio * n_pos)


def classification_metrics(labels: torch.Tensor, probs: torch.Tensor, threshold: float = 0.5) -> dict:
    """Metrics of positive-class probabilities ``probs`` against 0/1 ``labels``."""
    labels = labels.reshape(-1).bool()
    predicted = probs.reshape(-1) > threshold
    tp = int((predicted & labels).sum())
    fp = int((predicted & ~labels).sum())
    fn = int((~predicted & labels).sum())
    tn = int((~predicted & ~labels).sum())
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    return {
        "n": labels.numel(),
        "n_pos": tp + fn,
        "threshold": threshold,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "accuracy": _ratio(tp + tn, labels.numel()),
        "accuracy_neg": _ratio(tn, tn + fp),
        "accuracy_pos": _ratio(tp, tp + fn),
        "precision": precision,
        "recall": recall,
        "f1": _ratio(2 * precision * recall, precision + recall),
        "auc": roc_auc(labels, probs),
    }


def segmentation_counts(pred: torch.Tensor, label: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """(3,) int64 [tp, fp, fn] pixel counts of a batch (pred probabilities,
    label bool/0-1), on pred's device."""
    p = pred.detach() > threshold
    l = label.bool()
    return torch.stack([(p & l).sum(), (p & ~l).sum(), (~p & l).sum()]).to(torch.int64)


def segmentation_metrics(counts: torch.Tensor) -> dict:
    """Dice, pixel recall and precision from summed [tp, fp, fn] counts.

    ``fp_per_label_pixel`` is the book's "% all" (false positives over
    labelled pixels), as a ratio.
    """
    tp, fp, fn = (int(v) for v in counts.tolist())
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "dice": _ratio(2 * tp, 2 * tp + fp + fn),
        "recall": _ratio(tp, tp + fn),
        "precision": _ratio(tp, tp + fp),
        "fp_per_label_pixel": _ratio(fp, tp + fn),
    }
