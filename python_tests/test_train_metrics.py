"""Training metrics against hand-computed values and a brute-force AUC."""

import itertools
import math

import pytest
import torch

from torchlite.train.metrics import classification_metrics, roc_auc, segmentation_counts, segmentation_metrics


def _pairwise_auc(labels, scores):
    pos = [s for l, s in zip(labels, scores) if l]
    neg = [s for l, s in zip(labels, scores) if not l]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_auc_matches_pairwise_count_with_ties():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        labels = torch.randint(0, 2, (40,), generator=g)
        scores = torch.randint(0, 6, (40,), generator=g).float() / 5  # many ties
        if labels.all() or not labels.any():
            continue
        assert roc_auc(labels, scores) == pytest.approx(_pairwise_auc(labels.tolist(), scores.tolist()), abs=1e-12)


def test_auc_extremes():
    labels = torch.tensor([0, 0, 1, 1])
    assert roc_auc(labels, torch.tensor([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert roc_auc(labels, torch.tensor([0.9, 0.8, 0.2, 0.1])) == 0.0
    assert roc_auc(labels, torch.full((4,), 0.5)) == 0.5
    assert math.isnan(roc_auc(torch.ones(3), torch.rand(3)))


def test_classification_metrics_by_hand():
    labels = torch.tensor([1, 1, 1, 0, 0, 0, 0, 0])
    probs = torch.tensor([0.9, 0.6, 0.2, 0.7, 0.1, 0.3, 0.4, 0.05])
    m = classification_metrics(labels, probs)
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (2, 1, 1, 4)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["accuracy_pos"] == pytest.approx(2 / 3) and m["accuracy_neg"] == pytest.approx(4 / 5)
    nothing = classification_metrics(labels, torch.zeros(8))
    assert nothing["precision"] == 0.0 and nothing["f1"] == 0.0


def test_segmentation_counts_never_negative():
    # The book's fp = pred * ~label on a float/long label goes negative;
    # counts here are pixel counts.
    pred = torch.tensor([[[[0.9, 0.8], [0.1, 0.7]]]])
    label = torch.tensor([[[[1, 0], [1, 0]]]], dtype=torch.long)
    counts = segmentation_counts(pred, label)
    assert counts.tolist() == [1, 2, 1]
    m = segmentation_metrics(counts)
    assert m["dice"] == pytest.approx(2 / (2 + 2 + 1))
    assert m["recall"] == pytest.approx(0.5) and m["precision"] == pytest.approx(1 / 3)
    assert m["fp_per_label_pixel"] == pytest.approx(1.0)


def test_prior_shift_threshold_by_hand():
    from torchlite.train.metrics import prior_shift_threshold

    # 10 nodules, 490 non-nodules, trained 1:1: odds 49:1 against -> 0.98.
    assert prior_shift_threshold(10, 490, 1) == pytest.approx(0.98)
    # Trained 1:7: odds 490 / (7 * 10) = 7 -> 0.875; unbalanced training keeps 0.5.
    assert prior_shift_threshold(10, 490, 7) == pytest.approx(0.875)
    assert prior_shift_threshold(10, 490, 0) == 0.5
    # Bayes: a balanced probability p at the threshold is natural posterior 0.5.
    p = prior_shift_threshold(10, 490, 1)
    natural_odds = p / (1 - p) * (10 / 490)
    assert natural_odds == pytest.approx(1.0)


def test_classification_metrics_threshold():
    labels = torch.tensor([1, 1, 0, 0])
    probs = torch.tensor([0.99, 0.7, 0.8, 0.1])
    assert classification_metrics(labels, probs)["fp"] == 1
    m = classification_metrics(labels, probs, threshold=0.9)
    assert (m["tp"], m["fp"], m["fn"], m["threshold"]) == (1, 0, 1, 0.9)
