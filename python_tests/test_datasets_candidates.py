"""CandidateDataset: crops, labels, centers, balancing, epochs (tiny scans)."""

from collections import Counter

import numpy as np
import pytest
import torch
from _luna_fixture import make_luna, numpy_crop

from torchlite.data.datasets import CandidateDataset, LunaSource

SMALL = (8, 12, 10)


@pytest.fixture(scope="module")
def luna(tmp_path_factory):
    root = tmp_path_factory.mktemp("luna")
    series = make_luna(root, n_series=5, n_benign=1, n_malignant=1, n_negatives=6)
    return LunaSource(root), {s.uid: s for s in series}


def _truth_rows(truth, uids):
    """(uid, irc, is_nodule) of every candidate of the given series."""
    out = []
    for uid in uids:
        s = truth[uid]
        out += [(uid, tuple(v), True) for v in s.nodules] + [(uid, tuple(v), False) for v in s.negatives]
    return out


def test_validation_set_is_every_candidate_of_its_series_once(luna):
    src, truth = luna
    ds = CandidateDataset(src, val=True, val_stride=2)
    items = [ds[i] for i in range(len(ds))]
    got = Counter((it.series_uid, tuple(it.center_irc.tolist()), bool(it.label)) for it in items)
    expected = Counter(_truth_rows(truth, src.split(2).val))
    assert got == expected
    with pytest.raises(IndexError):
        ds[len(ds)]


@pytest.mark.parametrize("clamp", [False, True])
@pytest.mark.parametrize("size", [(32, 48, 48), SMALL])
def test_crops_equal_numpy_indexing_of_the_scan(luna, size, clamp):
    src, truth = luna
    ds = CandidateDataset(src, val=True, val_stride=2, size=size, clamp=clamp)
    assert len(ds) > 0
    for i in range(len(ds)):
        it = ds[i]
        assert it.crop.dtype == torch.float32 and tuple(it.crop.shape) == (1, *size)
        assert it.label.dtype == torch.int64 and it.label.shape == ()
        expected = numpy_crop(truth[it.series_uid].array, it.center_irc.tolist(), size, clamp=clamp)
        np.testing.assert_array_equal(it.crop[0].numpy(), expected)


def test_clip_and_fill_are_arguments(luna):
    src, truth = luna
    ds = CandidateDataset(src, val=True, val_stride=2, size=SMALL, clip=None, fill=-3000.0)
    corner = [i for i in range(len(ds)) if ds[i].center_irc[0] == 0]
    assert corner, "the fixture puts a candidate on a corner"
    for i in corner + [0]:
        it = ds[i]
        expected = numpy_crop(truth[it.series_uid].array, it.center_irc.tolist(), SMALL, fill=-3000.0, clip=None)
        np.testing.assert_array_equal(it.crop[0].numpy(), expected)
        assert (it.crop == -3000.0).any() or i not in corner


def test_ratio_one_alternates_and_cycles_every_list(luna):
    src, truth = luna
    train = src.split(2).train
    n_pos = sum(len(truth[u].nodules) for u in train)
    n_neg = sum(len(truth[u].negatives) for u in train)
    ds = CandidateDataset(src, val_stride=2, ratio=1, epoch_samples=4 * n_neg)
    labels = [int(ds[i].label) for i in range(len(ds))]
    assert labels == [1, 0] * (2 * n_neg)
    # each list is walked in a shuffled order and wrapped around: every
    # positive appears equally often, every negative exactly twice
    counts = Counter((ds[i].series_uid, tuple(ds[i].center_irc.tolist())) for i in range(0, len(ds), 2))
    assert set(counts.values()) == {2 * n_neg // n_pos} and len(counts) == n_pos
    neg = Counter((ds[i].series_uid, tuple(ds[i].center_irc.tolist())) for i in range(1, len(ds), 2))
    assert set(neg.values()) == {2} and len(neg) == n_neg


@pytest.mark.parametrize("ratio", [2, 3])
def test_ratio_blocks_are_one_positive_then_ratio_negatives(luna, ratio):
    src, _ = luna
    ds = CandidateDataset(src, val_stride=2, ratio=ratio, epoch_samples=5 * (ratio + 1) + 2)
    labels = [int(ds[i].label) for i in range(len(ds))]
    assert labels == ([1] + [0] * ratio) * 5 + [1, 0]
    assert sum(labels) / len(labels) == pytest.approx(1 / (ratio + 1), abs=0.1)


def test_ratio_zero_is_the_whole_list_shuffled(luna):
    src, truth = luna
    ds = CandidateDataset(src, val_stride=2, ratio=0)
    items = [ds[i] for i in range(len(ds))]
    rows = Counter((it.series_uid, tuple(it.center_irc.tolist()), bool(it.label)) for it in items)
    assert rows == Counter(_truth_rows(truth, src.split(2).train))


def test_epochs_reshuffle_deterministically(luna):
    src, _ = luna

    def order(seed, epoch):
        ds = CandidateDataset(src, val_stride=2, ratio=1, epoch_samples=24, seed=seed)
        ds.set_epoch(epoch)
        return [(ds[i].series_uid, tuple(ds[i].center_irc.tolist())) for i in range(len(ds))]

    assert order(0, 0) == order(0, 0)
    assert order(0, 0) != order(0, 1)
    assert order(0, 0) != order(1, 0)
    # the same item is rebuilt identically, whatever was read before it
    ds = CandidateDataset(src, val_stride=2, ratio=1, epoch_samples=24, seed=3)
    ds.set_epoch(2)
    late = ds[17]
    ds.set_epoch(0)
    _ = [ds[i] for i in range(5)]
    ds.set_epoch(2)
    assert torch.equal(ds[17].crop, late.crop)


def test_default_epoch_length_is_the_books(luna):
    src, _ = luna
    assert len(CandidateDataset(src, val_stride=2)) == 50_000  # balanced: chapter 14's
    assert len(CandidateDataset(src, val_stride=2, ratio=0)) == len(CandidateDataset(src, val_stride=2, ratio=0).table)


def test_bad_arguments_are_named(luna):
    src, _ = luna
    with pytest.raises(ValueError, match="`ratio`"):
        CandidateDataset(src, ratio=-1)
    with pytest.raises(ValueError, match="`augment`"):
        CandidateDataset(src, augment="gpu")
    with pytest.raises(ValueError, match="validation set"):
        CandidateDataset(src, val=True, augment="sample")
    with pytest.raises(ValueError, match="`epoch_samples`"):
        CandidateDataset(src, epoch_samples=0)
    with pytest.raises(ValueError, match="`size`"):
        CandidateDataset(src, size=(32, 48))
    with pytest.raises(ValueError, match="`clip`"):
        CandidateDataset(src, clip=(10, -10))
    with pytest.raises(ValueError, match="val_stride"):
        CandidateDataset(src, val=True, val_stride=0)
    with pytest.raises(ValueError, match="`seed`"):
        CandidateDataset(src, seed=-1)
    with pytest.raises(ValueError, match="no training series"):
        CandidateDataset(src, val_stride=1)  # every series is validation


def test_balancing_without_nodules_says_so(tmp_path):
    make_luna(tmp_path, n_series=2, n_benign=0, n_malignant=0)
    with pytest.raises(ValueError, match="no positive candidates in the training series"):
        CandidateDataset(tmp_path, val_stride=0, ratio=1)
    assert len(CandidateDataset(tmp_path, val_stride=0, ratio=0)) == 2 * 6
