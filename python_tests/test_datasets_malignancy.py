"""MalignancyDataset: the book's 50/25/25 training mix, benign + malignant validation."""

from collections import Counter

import numpy as np
import pytest
from _luna_fixture import make_luna, numpy_crop

from torchlite.data.datasets import LunaSource, MalignancyDataset


@pytest.fixture(scope="module")
def luna(tmp_path_factory):
    root = tmp_path_factory.mktemp("luna")
    series = make_luna(root, n_series=4, n_benign=2, n_malignant=1, n_negatives=5)
    return LunaSource(root), {s.uid: s for s in series}


def _kind(truth, item):
    s, irc = truth[item.series_uid], tuple(item.center_irc.tolist())
    if irc in map(tuple, s.malignant):
        return "malignant"
    if irc in map(tuple, s.benign):
        return "benign"
    assert irc in map(tuple, s.negatives)
    return "negative"


def test_training_mix_is_half_malignant_quarter_benign_quarter_negative(luna):
    src, truth = luna
    ds = MalignancyDataset(src, val_stride=2, epoch_samples=48, size=(6, 8, 8))
    items = [ds[i] for i in range(len(ds))]
    kinds = [_kind(truth, it) for it in items]
    assert kinds == ["benign", "malignant", "negative", "malignant"] * 12
    assert [int(it.label) for it in items] == [k == "malignant" for k in kinds]
    train = src.split(2).train
    # each list is cycled through evenly in its shuffled order
    mal = Counter((it.series_uid, tuple(it.center_irc.tolist())) for it, k in zip(items, kinds) if k == "malignant")
    assert len(mal) == sum(len(truth[u].malignant) for u in train) and len(set(mal.values())) == 1
    ben = Counter((it.series_uid, tuple(it.center_irc.tolist())) for it, k in zip(items, kinds) if k == "benign")
    assert len(ben) == sum(len(truth[u].benign) for u in train) and len(set(ben.values())) == 1
    assert {it.series_uid for it in items} <= set(train)


def test_validation_is_benign_then_malignant_each_once(luna):
    src, truth = luna
    ds = MalignancyDataset(src, val=True, val_stride=2)
    items = [ds[i] for i in range(len(ds))]
    kinds = [_kind(truth, it) for it in items]
    val = src.split(2).val
    n_ben = sum(len(truth[u].benign) for u in val)
    n_mal = sum(len(truth[u].malignant) for u in val)
    assert kinds == ["benign"] * n_ben + ["malignant"] * n_mal
    assert len({(it.series_uid, tuple(it.center_irc.tolist())) for it in items}) == len(items)
    for it in items:
        expected = numpy_crop(truth[it.series_uid].array, it.center_irc.tolist(), (32, 48, 48))
        np.testing.assert_array_equal(it.crop[0].numpy(), expected)


def test_default_epoch_is_the_books(luna):
    src, _ = luna
    assert len(MalignancyDataset(src, val_stride=2)) == 100_000


def test_a_missing_class_is_named(tmp_path):
    make_luna(tmp_path, n_series=2, n_benign=1, n_malignant=0)
    with pytest.raises(ValueError, match="no malignant candidates in the training series"):
        MalignancyDataset(tmp_path, val_stride=0)
    (tmp_path / "annotations_with_malignancy.csv").unlink()
    with pytest.raises(FileNotFoundError, match="annotations_with_malignancy.csv"):
        MalignancyDataset(tmp_path, val_stride=0)
