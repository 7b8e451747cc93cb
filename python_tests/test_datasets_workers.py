"""Datasets in DataLoader workers, and broken scans in the middle of an epoch."""

import logging
import pickle

import pytest
import torch
from torch.utils.data import DataLoader
from _luna_fixture import make_luna

from torchlite.data.datasets import CandidateDataset, LunaSource, MalignancyDataset, SegmentationDataset

SHAPE = (24, 40, 44)


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    root = tmp_path_factory.mktemp("luna")
    make_luna(root, n_series=4, n_negatives=6, shape=SHAPE)
    return LunaSource(root)


def _datasets(src):
    return [
        CandidateDataset(src, val_stride=0, epoch_samples=16, augment="sample", size=(8, 12, 12)),
        CandidateDataset(src, val=True, val_stride=2),
        MalignancyDataset(src, val_stride=0, epoch_samples=16, augment="sample"),
        SegmentationDataset(src, val_stride=0, epoch_samples=16, crop_size=24, patch_size=16),
        SegmentationDataset(src, val=True, val_stride=2),
    ]


def test_datasets_pickle_small_and_without_voxels(src):
    scan_bytes = SHAPE[0] * SHAPE[1] * SHAPE[2] * 2
    for ds in _datasets(src):
        before = len(pickle.dumps(ds))
        _ = [ds[i] for i in range(min(len(ds), 8))]  # opens and maps scans
        after = len(pickle.dumps(ds))
        assert before < 16_000 and after < 16_000, type(ds).__name__
        assert after < before + 1_000  # opened scans and epoch orders are not pickled
        assert after < scan_bytes / 4
        clone = pickle.loads(pickle.dumps(ds))
        first, again = ds[1], clone[1]
        assert all(torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b for a, b in zip(first, again))


def _batches(ds, workers, epoch=0):
    ds.set_epoch(epoch)
    loader = DataLoader(ds, batch_size=4, num_workers=workers, shuffle=False)
    return list(loader)


def _same(a, b):
    for x, y in zip(a, b):
        for u, v in zip(x, y):
            if isinstance(u, torch.Tensor):
                if not torch.equal(u, v):
                    return False
            elif u != v:
                return False
    return len(a) == len(b)


@pytest.mark.parametrize("kind", [0, 3])
def test_two_workers_yield_what_one_process_does(src, kind):
    ds = _datasets(src)[kind]
    single = _batches(ds, 0)
    assert _same(_batches(ds, 2), single)
    later = _batches(ds, 2, epoch=1)
    assert not _same(later, single)
    assert _same(later, _batches(ds, 0, epoch=1))


@pytest.fixture
def broken_src(tmp_path):
    series = make_luna(tmp_path, n_series=4, n_negatives=6, shape=(12, 20, 20))
    # The header stays valid (so the candidate lists keep its rows), the data
    # is cut short: found only when a worker opens the scan.
    bad = series[1]
    raw = bad.mhd.with_suffix(".raw")
    raw.write_bytes(raw.read_bytes()[:1000])
    return LunaSource(tmp_path), bad.uid


def test_a_broken_scan_is_skipped_with_a_warning_and_a_count(broken_src, caplog):
    src, bad = broken_src
    ds = CandidateDataset(src, val_stride=0, ratio=1, epoch_samples=40, size=(4, 6, 6))
    assert bad in ds.pool.paths  # not known to be broken yet
    with caplog.at_level(logging.WARNING):
        items = [ds[i] for i in range(len(ds))]
    assert len(items) == 40 and bad not in {it.series_uid for it in items}
    assert [int(it.label) for it in items] == [1, 0] * 20  # the balance survives the skip
    assert ds.n_broken == 1 and bad in ds.pool.broken
    warnings = [r for r in caplog.records if "broken scan" in r.getMessage()]
    assert len(warnings) == 1 and bad in warnings[0].getMessage()
    # in workers too: the epoch completes
    batches = list(DataLoader(ds, batch_size=8, num_workers=2))
    assert sum(len(b.series_uid) for b in batches) == 40
    assert bad not in {uid for b in batches for uid in b.series_uid}


def test_broken_scans_in_the_other_datasets(broken_src):
    src, bad = broken_src
    seg = SegmentationDataset(src, val=True, val_stride=1)  # skipped while listing the slices
    assert seg.n_broken == 1 and bad not in {seg[i].series_uid for i in range(len(seg))}
    train = SegmentationDataset(src, val_stride=0, crop_size=16, patch_size=8, epoch_samples=24)
    assert bad not in {train[i].series_uid for i in range(len(train))} and train.n_broken == 1
    mal = MalignancyDataset(src, val_stride=0, epoch_samples=24, size=(4, 6, 6))
    assert bad not in {mal[i].series_uid for i in range(len(mal))} and mal.n_broken == 1
