"""CtScan: zero-copy memory maps, the conversion cache, crops, broken scans."""

import importlib.util
import logging
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from _ct_files import DIRECTIONS, edit_header, sitk_array, volume, write_scan

import torchlite
from torchlite.data import scan as scan_module
from torchlite.data import scan_cache
from torchlite.data.metaimage import ScanError
from torchlite.data.scan import CtScan
from torchlite.data.scan_pool import ScanPool

SHAPE = (6, 7, 8)


@pytest.fixture
def root(tmp_path):
    return tmp_path / "luna"


def _scan_file(root, uid="1.2.3", data=None, **kw):
    return write_scan(root / "subset0" / f"{uid}.mhd", volume(SHAPE) if data is None else data, **kw)


# --- in place: zero copy -------------------------------------------------------


def test_raw_short_is_mapped_in_place_zero_copy(root):
    path = _scan_file(root, direction=DIRECTIONS["cycle_flip"])
    raw = path.with_suffix(".raw")
    scan = CtScan(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the non-writable warning is silenced, nothing else raised
        tensor = scan.open().tensor
    assert scan.mapped_in_place
    arr = scan.array
    assert isinstance(arr, np.memmap) and Path(arr.filename) == raw.absolute()
    assert not arr.flags.writeable
    assert tensor.dtype == torch.int16 and tuple(tensor.shape) == SHAPE
    start = arr.ctypes.data
    assert start <= tensor.data_ptr() < start + arr.nbytes  # inside the memmap, not a copy
    np.testing.assert_array_equal(tensor.numpy(), sitk_array(path))
    # The strongest proof of zero copy: a change to the file shows through.
    with open(raw, "r+b") as f:
        f.seek(2 * 5)
        f.write(np.int16(1234).tobytes())
    assert tensor.view(-1)[5].item() == 1234
    assert not (root / ".torchlite_cache").exists()


def test_scan_is_lazy_and_pickles_without_voxels(root):
    path = _scan_file(root)
    scan = CtScan(path)
    assert scan._array is None and scan._header is None
    assert scan.series_uid == "1.2.3" and scan.shape == SHAPE
    assert scan._array is None  # the header alone does not map the voxels
    scan.open()
    blob = pickle.dumps(scan)
    assert len(blob) < 4096
    again = pickle.loads(blob)
    assert again._array is None
    torch.testing.assert_close(again.tensor, scan.tensor)


def test_geometry_comes_from_the_header(root):
    path = _scan_file(root, spacing=(0.6, 0.7, 2.0), origin=(1, 2, 3), direction=DIRECTIONS["cycle"])
    g = CtScan(path).geometry
    assert g.shape == SHAPE
    np.testing.assert_allclose(g.direction, np.reshape(DIRECTIONS["cycle"], (3, 3)))


# --- the conversion cache -----------------------------------------------------


def _files(folder):
    return sorted(os.listdir(folder)) if folder.exists() else []


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda root: _scan_file(root, compress=True), id="zraw"),
        pytest.param(lambda root: _scan_file(root, data=volume(SHAPE).astype(np.float32)), id="float32"),
        pytest.param(lambda root: _scan_file(root, data=volume(SHAPE).astype(np.int32)), id="int32"),
        pytest.param(lambda root: _big_endian(root), id="big-endian"),
    ],
)
def test_other_formats_go_through_the_cache(root, make):
    path = make(root)
    scan = CtScan(path).open()
    assert not scan.mapped_in_place
    cache = root / ".torchlite_cache"
    (name,) = _files(cache)
    assert name.startswith("1.2.3.") and name.endswith(".npy")
    assert isinstance(scan.array, np.memmap) and Path(scan.array.filename) == (cache / name).absolute()
    assert not scan.array.flags.writeable and scan.tensor.dtype == torch.int16
    np.testing.assert_array_equal(scan.array, sitk_array(path).astype(np.int16))
    np.testing.assert_array_equal(scan.array, volume(SHAPE))


def _big_endian(root):
    path = _scan_file(root)
    path.with_suffix(".raw").write_bytes(volume(SHAPE).astype(">i2").tobytes())
    edit_header(path, {"BinaryDataByteOrderMSB": "True"})
    return path


def test_float_values_are_rounded_and_clipped_with_a_warning(root, caplog):
    data = np.zeros(SHAPE, np.float32)
    data.flat[:6] = [1.4, -2.6, 0.5, 1.5, 40000.0, -40000.0]
    path = _scan_file(root, data=data)
    with caplog.at_level(logging.WARNING, logger="torchlite.data.scan_cache"):
        arr = CtScan(path).array
    assert arr.flat[:6].tolist() == [1, -3, 0, 2, 32767, -32768]  # nearest, ties to even
    assert any("exceed int16" in m for m in caplog.messages)


def test_non_finite_floats_are_a_broken_scan(root):
    data = np.zeros(SHAPE, np.float32)
    data[1, 2, 3] = np.nan
    path = _scan_file(root, data=data)
    with pytest.raises(ScanError, match=r"1\.2\.3\.raw: ElementType: MET_FLOAT data holds NaN"):
        CtScan(path).open()


def test_cache_is_built_once_atomically(root, monkeypatch):
    path = _scan_file(root, compress=True)
    calls = []
    real = scan_cache.read_volume
    monkeypatch.setattr(scan_cache, "read_volume", lambda h: calls.append(h) or real(h))
    CtScan(path).open()
    cache = root / ".torchlite_cache"
    (name,) = _files(cache)  # one file, no temporary left beside it
    stat = (cache / name).stat()
    for _ in range(2):
        CtScan(path).open()
    assert len(calls) == 1
    assert _files(cache) == [name]
    assert (cache / name).stat().st_mtime_ns == stat.st_mtime_ns and (cache / name).stat().st_ino == stat.st_ino


def test_stale_cache_is_rebuilt_when_the_source_changes(root, monkeypatch):
    path = _scan_file(root, compress=True)
    first = CtScan(path).array.copy()
    (old,) = _files(root / ".torchlite_cache")
    _scan_file(root, data=volume(SHAPE, seed=7), compress=True)
    st = path.with_suffix(".zraw").stat()
    os.utime(path.with_suffix(".zraw"), ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # even on coarse clocks
    second = CtScan(path).array
    np.testing.assert_array_equal(second, volume(SHAPE, seed=7))
    assert not np.array_equal(first, second)
    (new,) = _files(root / ".torchlite_cache")  # the stale file is gone
    assert new != old


def test_unreadable_cache_file_is_rebuilt(root, caplog):
    path = _scan_file(root, compress=True)
    CtScan(path).open()
    (name,) = _files(root / ".torchlite_cache")
    (root / ".torchlite_cache" / name).write_bytes(b"\x93NUMPY garbage")
    with caplog.at_level(logging.WARNING, logger="torchlite.data.scan_cache"):
        np.testing.assert_array_equal(CtScan(path).array, volume(SHAPE))
    assert any("rebuilding" in m for m in caplog.messages)


def test_failed_cache_write_leaves_nothing(root, monkeypatch):
    path = _scan_file(root, compress=True)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(scan_cache.np, "save", disk_full)
    with pytest.raises(ScanError, match=r"\.torchlite_cache: cache: cannot write the conversion cache: No space"):
        CtScan(path).open()
    assert _files(root / ".torchlite_cache") == []


def test_cache_dir_can_be_overridden(root, tmp_path):
    path = _scan_file(root, compress=True)
    elsewhere = tmp_path / "fast_disk"
    CtScan(path, cache_dir=elsewhere).open()
    assert len(_files(elsewhere)) == 1 and not (root / ".torchlite_cache").exists()
    assert scan_cache.default_cache_dir(path) == (root / ".torchlite_cache").absolute()
    assert scan_cache.default_cache_dir(tmp_path / "loose.mhd") == (tmp_path / ".torchlite_cache").absolute()


# --- crops -----------------------------------------------------------------------


def _expected_crops(arr, centers, size, fill, clip, clamp):
    """Independent truth: fancy indexing of SimpleITK's array, voxel by voxel."""
    out = np.full((len(centers), 1, *size), fill, np.float32)
    for n, center in enumerate(centers):
        idx, ok = [], []
        for c, s, dim in zip(center, size, arr.shape):
            start = c - s // 2
            if clamp:
                start = min(max(start, 0), max(dim - s, 0))
            i = np.arange(start, start + s)
            idx.append(i)
            ok.append((i >= 0) & (i < dim))
        values = arr[np.ix_(idx[0][ok[0]], idx[1][ok[1]], idx[2][ok[2]])].astype(np.float32)
        if clip is not None:
            values = np.clip(values, *clip)
        out[n, 0][np.ix_(ok[0], ok[1], ok[2])] = values
    return out


def _reference_crop3d():
    # reference.py needs only torch; load it by path, since importing
    # torchlite.ops would load the compiled library.
    spec = importlib.util.spec_from_file_location(
        "_tl_reference", Path(torchlite.__file__).parent / "ops" / "reference.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "crop3d_reference"):
        pytest.skip("torchlite.ops.reference has no crop3d_reference yet")
    return module.crop3d_reference


@pytest.fixture(params=["operator", "reference"])
def crop_impl(request, monkeypatch):
    if request.param == "operator":
        try:
            scan_module._crop3d()
        except ImportError as exc:
            pytest.skip(f"compiled crop3d not available: {exc}")
    else:
        ref = _reference_crop3d()
        monkeypatch.setattr(scan_module, "_crop3d", lambda: ref)
    return request.param


CENTERS = [(3, 3, 4), (0, 0, 0), (5, 6, 7), (-2, 3, 9), (40, -40, 4), (3, 6, 0)]


@pytest.mark.parametrize("compress", [False, True], ids=["memmap", "cache"])
@pytest.mark.parametrize("clip, clamp", [((-1000.0, 1000.0), False), (None, False), ((-500.0, 200.0), True)])
def test_crops_equal_crops_of_the_sitk_array(root, crop_impl, compress, clip, clamp):
    path = _scan_file(root, compress=compress, direction=DIRECTIONS["flip_x"])
    size = (3, 4, 5)
    got = CtScan(path).crop(CENTERS, size, clip=clip, clamp=clamp)
    assert got.dtype == torch.float32 and tuple(got.shape) == (len(CENTERS), 1, *size)
    expected = _expected_crops(sitk_array(path), CENTERS, size, -1000.0, clip, clamp)
    np.testing.assert_array_equal(got.numpy(), expected)
    if clip == (-1000.0, 1000.0):
        assert got.min() >= -1000 and got.max() <= 1000 and sitk_array(path).max() > 1000


def test_crop_single_center_and_empty(root, crop_impl):
    scan = CtScan(_scan_file(root))
    assert tuple(scan.crop((3, 3, 3), (2, 2, 2)).shape) == (1, 1, 2, 2, 2)
    assert tuple(scan.crop(np.zeros((0, 3), np.int64), (2, 2, 2)).shape) == (0, 1, 2, 2, 2)
    assert tuple(scan.crop([], (2, 2, 2)).shape) == (0, 1, 2, 2, 2)


def test_crop_rejects_fractional_centers(root):
    with pytest.raises(TypeError, match="`centers_irc` must be integer"):
        CtScan(_scan_file(root)).crop([[1.5, 2.0, 3.0]], (2, 2, 2))


# --- broken scans ------------------------------------------------------------------


def _missing_raw(path):
    path.with_suffix(".raw").unlink()


def _truncated_raw(path):
    raw = path.with_suffix(".raw")
    raw.write_bytes(raw.read_bytes()[:-100])


def _dimsize_mismatch(path):
    edit_header(path, {"DimSize": "8 7 9"})


def _unknown_type(path):
    edit_header(path, {"ElementType": "MET_HALF"})


def _garbage_header(path):
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)  # a picture named .mhd


def _missing_field(path):
    edit_header(path, {"ElementSpacing": None})


def _corrupt_zraw(path):
    write_scan(path, volume(SHAPE), compress=True)
    z = path.with_suffix(".zraw")
    z.write_bytes(b"\0" * z.stat().st_size)


BROKEN = {
    "missing-raw": (_missing_raw, r"1\.2\.3\.mhd: ElementDataFile: data file .*1\.2\.3\.raw does not exist"),
    "truncated-raw": (_truncated_raw, r"1\.2\.3\.raw: DimSize: file has 572 data bytes.*needs 672 bytes"),
    "dimsize-mismatch": (_dimsize_mismatch, r"1\.2\.3\.raw: DimSize: file has 672 data bytes.*DimSize 8x7x9"),
    "unknown-type": (_unknown_type, r"1\.2\.3\.mhd: ElementType: unknown or unsupported type 'MET_HALF'"),
    "garbage-header": (_garbage_header, r"1\.2\.3\.mhd: line 1: not ASCII text"),
    "missing-field": (_missing_field, r"1\.2\.3\.mhd: ElementSpacing: missing"),
    "corrupt-zraw": (_corrupt_zraw, r"1\.2\.3\.zraw: CompressedData: corrupt compressed data"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_scan_error_names_file_and_field(root, case):
    breaker, match = BROKEN[case]
    path = _scan_file(root)
    breaker(path)
    with pytest.raises(ScanError, match=match) as info:
        CtScan(path).open()
    assert str(root) in str(info.value)


def test_pool_skips_broken_scans_with_one_warning_each(root, caplog):
    paths = {"good": _scan_file(root, uid="good")}
    for case, (breaker, _) in BROKEN.items():
        paths[case] = _scan_file(root, uid=case)
        breaker(paths[case])
    pool = ScanPool(paths)
    with caplog.at_level(logging.WARNING, logger="torchlite.data.scan_pool"):
        for _ in range(2):  # asking again neither raises nor warns again
            assert pool.get("good") is not None
            for case in BROKEN:
                assert pool.get(case) is None
            assert pool.get("not-downloaded") is None
    assert pool.n_broken == len(BROKEN) + 1
    assert len(caplog.records) == len(BROKEN) + 1
    for case, (_, match) in BROKEN.items():
        field = match.split(": ")[1]
        assert any(case in m and field in m for m in caplog.messages), case
    assert "not on disk" in pool.broken["not-downloaded"]


def test_pool_bounds_open_scans_and_pickles_small(root):
    paths = {uid: _scan_file(root, uid=uid) for uid in ("a", "b", "c")}
    pool = ScanPool(paths, max_open=2)
    a = pool.get("a")
    pool.get("b")
    assert pool.get("a") is a  # reused while open
    pool.get("c")  # evicts the least recently used: b
    assert set(pool._open) == {"a", "c"}
    assert pool.get("b") is not None
    assert "a" in pool and "zzz" not in pool
    pool.broken["x"] = "why"
    again = pickle.loads(pickle.dumps(pool))
    assert len(pickle.dumps(pool)) < 4096 and again.broken == {} and again._open == {}
    torch.testing.assert_close(again.get("a").tensor, a.tensor)
    with pytest.raises(ValueError, match="`max_open`"):
        ScanPool(paths, max_open=0)


def test_local_short_data_is_mapped_in_place(root):
    base = _scan_file(root)
    text = base.read_text().replace("ElementDataFile = 1.2.3.raw", "ElementDataFile = LOCAL")
    path = root / "subset0" / "local.mhd"
    path.write_bytes(text.encode() + volume(SHAPE).tobytes())
    scan = CtScan(path).open()
    assert scan.mapped_in_place and Path(scan.array.filename) == path.absolute()
    np.testing.assert_array_equal(scan.tensor.numpy(), sitk_array(path))


def test_pool_raises_when_out_of_file_descriptors(root, monkeypatch):
    path = _scan_file(root)

    def no_fds(*args, **kwargs):
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(scan_module, "memmap_volume", no_fds)
    pool = ScanPool({"1.2.3": path})
    with pytest.raises(OSError, match="Too many open files"):
        pool.get("1.2.3")
    assert pool.n_broken == 0
