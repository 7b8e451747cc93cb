"""The training-samples benchmark's references (not timings: those are never asserted)."""

import sys

import numpy as np
import pytest

from torchlite.bench import registry
from torchlite.bench.cases import training_samples as ts


def test_the_goals_are_against_the_books_two_paths_in_both_groups():
    cases = [c for c in registry.all_cases() if c.group in (ts.GROUP, ts.GROUP_WORKERS)]
    for group in (ts.GROUP, ts.GROUP_WORKERS):
        names = [c.name for c in cases if c.group == group]
        assert names[:3] == [ts.BOOK, ts.BOOK_CACHED, ts.BOOK_READY]
        goals = [c.targets for c in cases if c.group == group and c.targets]
        assert goals and all(t == {ts.BOOK: 50.0, ts.BOOK_CACHED: 5.0} for t in goals)
    # The crops-in-memory case is shown as a lower bound, with no goal against it.
    assert not any(ts.BOOK_READY in c.targets for c in cases)


def test_without_diskcache_the_cached_case_is_skipped(monkeypatch):
    monkeypatch.setitem(sys.modules, "diskcache", None)  # import diskcache -> ImportError
    ts._gzip_disk.cache_clear()
    ts._book_cache.cache_clear()
    try:
        with pytest.raises(registry.CaseUnavailable, match="diskcache is not installed"):
            ts._make_book_cached(True, "cpu")
    finally:
        ts._gzip_disk.cache_clear()


def _val_files(root):
    """The first two bytes of each value file."""
    return [p.read_bytes()[:2] for p in root.rglob("*.val")]


def test_gzip_disk_gzips_bytes_and_stores_a_memoized_result_as_a_plain_pickle(tmp_path):
    diskcache = pytest.importorskip("diskcache")
    cache = diskcache.FanoutCache(str(tmp_path / "bytes"), disk=ts._gzip_disk(), shards=4)
    noise = np.random.default_rng(0).bytes(1 << 16)  # still over diskcache's 32 KiB gzipped: a file
    repeats = bytes(range(256)) * 1024  # gzipped under 32 KiB: in the sqlite row
    cache.set("noise", noise)
    cache.set("repeats", repeats)
    assert cache.get("noise") == noise and cache.get("repeats") == repeats
    assert _val_files(tmp_path / "bytes") == [b"\x1f\x8b"]  # one file, gzip
    cache.close()
    cache = diskcache.FanoutCache(str(tmp_path / "pickle"), disk=ts._gzip_disk(), shards=4)
    value = (np.arange(32 * 48 * 48, dtype=np.float32).reshape(ts.SIZE), ts._IrcTuple(1, 2, 3))
    cache.set("crop", value)
    chunk, irc = cache.get("crop")
    assert np.array_equal(chunk, value[0]) and chunk.dtype == np.float32 and irc == (1, 2, 3)
    assert _val_files(tmp_path / "pickle") == [b"\x80\x05"]  # a pickle, as the book's
    cache.close()


def test_the_memoized_crop_is_the_books_and_a_warm_lookup_loads_no_scan(tmp_path, monkeypatch):
    pytest.importorskip("diskcache")
    from torchlite.data.candidates import load_candidate_info
    from torchlite.data.discovery import discover_scans
    from torchlite.data.synth import generate_dataset

    generate_dataset(tmp_path / "data", 1, seed=0, size="small", progress=False)
    paths = {uid: str(p) for uid, p in discover_scans(tmp_path / "data").items()}
    records = load_candidate_info(tmp_path / "data")[0][:4]
    fill = ts._book_memoized(tmp_path / "cache", paths)
    crops = []
    for r in records:
        chunk, center_irc = fill(*ts._book_key(r))
        assert chunk.dtype == np.float32 and chunk.shape == ts.SIZE and len(center_irc) == 3
        assert np.array_equal(chunk, ts._book_raw_candidate(paths[r.series_uid], r.center_xyz))
        crops.append(chunk)
    fill.cache.close()

    def no_load(mhd):
        raise AssertionError(f"a warm lookup loaded {mhd}")

    monkeypatch.setattr(ts, "_book_ct", no_load)
    get = ts._book_memoized(tmp_path / "cache", paths)  # a fresh opening, as a DataLoader worker's
    for r, crop in zip(records, crops):
        assert np.array_equal(get(*ts._book_key(r))[0], crop)
    get.cache.close()
