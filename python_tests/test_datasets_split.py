"""The series split: deterministic, disjoint, the same for all three datasets."""

import pytest
from _ct_files import volume, write_scan
from _luna_fixture import make_luna

from torchlite.data.datasets import (
    CandidateDataset,
    LunaSource,
    MalignancyDataset,
    SegmentationDataset,
    split_series,
)


def test_every_stride_th_sorted_series_is_validation():
    uids = [f"u{i:02d}" for i in range(10)]
    split = split_series(reversed(uids + uids[:3]), val_stride=3)  # order and duplicates do not matter
    assert split.val == ("u00", "u03", "u06", "u09")
    assert split.train == ("u01", "u02", "u04", "u05", "u07", "u08")
    assert split.half(True) == split.val and split.half(False) == split.train
    assert split_series(uids, 0).train == tuple(uids) and split_series(uids, 0).val == ()
    assert split_series(uids, 1).train == ()
    assert split_series(uids).val == ("u00",)  # default stride 10
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="`val_stride`"):
            split_series(uids, bad)


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    root = tmp_path_factory.mktemp("luna")
    make_luna(root, n_series=7, n_benign=1, n_malignant=1, n_negatives=3, shape=(10, 16, 16))
    # a scan no CSV row mentions still takes its place in the split
    write_scan(root / "subset1" / "1.2.826.0.1.3680043.1035.mhd", volume((10, 16, 16)))
    return LunaSource(root)


def _halves(make):
    return {val: set(make(val).pool.paths) for val in (False, True)}


def test_all_datasets_split_the_same_series(src):
    stride = 3
    kw = dict(val_stride=stride)
    seg_kw = dict(crop_size=16, patch_size=8, **kw)
    splits = {
        "candidates": _halves(lambda val: CandidateDataset(src, val=val, **kw)),
        "malignancy": _halves(lambda val: MalignancyDataset(src, val=val, **kw)),
        "segmentation": _halves(lambda val: SegmentationDataset(src, val=val, **seg_kw)),
    }
    everything = set(src.series_paths)
    assert len(everything) == 8
    expected = src.split(stride)
    for name, halves in splits.items():
        assert not halves[True] & halves[False], name
        assert halves[True] | halves[False] == everything, name
        assert halves[True] == set(expected.val) and halves[False] == set(expected.train), name
    assert "1.2.826.0.1.3680043.1035" in expected.train + expected.val


def test_items_come_from_their_half_only(src):
    split = src.split(3)
    for val in (False, True):
        allowed = set(split.half(val))
        for ds in (
            CandidateDataset(src, val=val, val_stride=3, ratio=0),
            MalignancyDataset(src, val=val, val_stride=3, epoch_samples=16),
            SegmentationDataset(src, val=val, val_stride=3, crop_size=16, patch_size=8, epoch_samples=16),
        ):
            n = min(len(ds), 40)
            assert n > 0
            assert {ds[i].series_uid for i in range(n)} <= allowed, (type(ds).__name__, val)


def test_a_folder_path_gives_the_same_split(src):
    direct = CandidateDataset(src.root, val=True, val_stride=3)
    assert set(direct.pool.paths) == set(src.split(3).val)
