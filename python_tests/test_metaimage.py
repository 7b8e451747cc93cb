""".mhd parsing and voxel reading against SimpleITK's reading of the same file."""

import pickle
import zlib

import numpy as np
import pytest
import SimpleITK as sitk
from _ct_files import DIRECTIONS, edit_header, sitk_array, volume, write_scan

from torchlite.data.metaimage import ScanError, read_header, read_volume

PIXEL_TYPES = {
    "MET_CHAR": sitk.sitkInt8,
    "MET_UCHAR": sitk.sitkUInt8,
    "MET_SHORT": sitk.sitkInt16,
    "MET_USHORT": sitk.sitkUInt16,
    "MET_INT": sitk.sitkInt32,
    "MET_UINT": sitk.sitkUInt32,
    "MET_LONG_LONG": sitk.sitkInt64,
    "MET_ULONG_LONG": sitk.sitkUInt64,
    "MET_FLOAT": sitk.sitkFloat32,
    "MET_DOUBLE": sitk.sitkFloat64,
}


def _write_typed(path, pixel, compress=False, direction=DIRECTIONS["cycle_flip"]):
    image = sitk.GetImageFromArray(np.abs(volume((3, 4, 5))).astype(np.int16) % 120)
    image = sitk.Cast(image, pixel)
    image.SetSpacing((0.7, 0.8, 2.5))
    image.SetOrigin((-10.5, 3.25, 100.0))
    image.SetDirection(direction)
    sitk.WriteImage(image, str(path), useCompression=compress)
    return path


def _assert_same_as_sitk(path):
    header = read_header(path)
    image = sitk.ReadImage(str(path))
    assert header.shape == image.GetSize()[::-1]
    np.testing.assert_allclose(header.spacing, image.GetSpacing(), rtol=1e-12)
    np.testing.assert_allclose(header.origin, image.GetOrigin(), atol=1e-12)
    np.testing.assert_allclose(header.direction, image.GetDirection(), atol=1e-12)
    ours, theirs = read_volume(header), sitk.GetArrayFromImage(image)
    assert ours.dtype == theirs.dtype and ours.dtype.isnative
    np.testing.assert_array_equal(ours, theirs)
    return header


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "zraw"])
@pytest.mark.parametrize("element_type", sorted(PIXEL_TYPES))
def test_every_element_type_reads_like_sitk(tmp_path, element_type, compress):
    path = _write_typed(tmp_path / "t.mhd", PIXEL_TYPES[element_type], compress)
    header = _assert_same_as_sitk(path)
    assert header.element_type == element_type
    assert header.compressed == compress
    assert header.data_path.suffix == (".zraw" if compress else ".raw")


def _handwritten(tmp_path, data: bytes, **fields):
    """A header SimpleITK does not write (big-endian, LOCAL, HeaderSize...)."""
    base = write_scan(tmp_path / "base.mhd", volume((2, 3, 4)), direction=DIRECTIONS["flip_yz"])
    out = tmp_path / "hand.mhd"
    edit_header(base, {"ElementDataFile": "hand.raw", **fields}, out=out)
    (tmp_path / "hand.raw").write_bytes(data)
    return out


def test_big_endian_short(tmp_path):
    data = volume((2, 3, 4)).astype(">i2").tobytes()
    path = _handwritten(tmp_path, data, BinaryDataByteOrderMSB="True")
    header = _assert_same_as_sitk(path)
    assert header.big_endian and header.dtype == np.dtype(">i2")


def test_big_endian_float_with_element_byte_order_key(tmp_path):
    data = volume((2, 3, 4)).astype(">f4").tobytes()
    path = _handwritten(tmp_path, data, BinaryDataByteOrderMSB=None, ElementType="MET_FLOAT")
    path.write_text(path.read_text().replace("ElementType", "ElementByteOrderMSB = True\nElementType"))
    _assert_same_as_sitk(path)


def test_header_size_skips_leading_bytes(tmp_path):
    data = b"\x07" * 17 + volume((2, 3, 4)).tobytes()
    path = _handwritten(tmp_path, data)
    path.write_text(path.read_text().replace("ElementType", "HeaderSize = 17\nElementType"))
    assert read_header(path).header_size == 17
    _assert_same_as_sitk(path)


def test_header_size_minus_one_reads_the_last_bytes(tmp_path):
    data = b"junk" * 5 + volume((2, 3, 4)).tobytes()
    path = _handwritten(tmp_path, data)
    path.write_text(path.read_text().replace("ElementType", "HeaderSize = -1\nElementType"))
    _assert_same_as_sitk(path)


def test_local_data_follows_the_header(tmp_path):
    base = write_scan(tmp_path / "base.mhd", volume((2, 3, 4)), direction=DIRECTIONS["cycle"])
    text = base.read_text().replace("ElementDataFile = base.raw", "ElementDataFile = LOCAL")
    path = tmp_path / "local.mhd"
    path.write_bytes(text.encode() + volume((2, 3, 4)).tobytes())
    header = _assert_same_as_sitk(path)
    assert header.data_path == path and header.local_offset == len(text.encode())


def test_synonyms_origin_position_orientation(tmp_path):
    base = write_scan(tmp_path / "s.mhd", volume((2, 3, 4)), direction=DIRECTIONS["cycle_flip"])
    text = base.read_text().replace("Offset", "Position").replace("TransformMatrix", "Orientation")
    base.write_text(text)
    _assert_same_as_sitk(base)
    base.write_text(text.replace("Position", "Origin").replace("Orientation", "Rotation"))
    _assert_same_as_sitk(base)


def test_defaults_when_optional_fields_are_absent(tmp_path):
    base = write_scan(tmp_path / "d.mhd", volume((2, 3, 4)), origin=(0, 0, 0))
    for key in ("ObjectType", "BinaryData", "BinaryDataByteOrderMSB", "CompressedData",
                "TransformMatrix", "Offset", "CenterOfRotation", "AnatomicalOrientation"):
        edit_header(base, {key: None})
    header = _assert_same_as_sitk(base)
    assert header.direction == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


# --- broken headers: every message names the file and the field -------------

BAD_FIELDS = [
    ({"DimSize": None}, "DimSize: missing"),
    ({"ElementSpacing": None}, "ElementSpacing: missing"),
    ({"ElementType": None}, "ElementType: missing"),
    ({"NDims": None}, "NDims: missing"),
    ({"NDims": "2"}, "NDims: only 3D"),
    ({"DimSize": "4 3"}, "DimSize: expected 3 values"),
    ({"DimSize": "4 3 x"}, "DimSize: expected 3 int"),
    ({"DimSize": "4 0 2"}, "DimSize: sizes must be positive"),
    ({"ElementSpacing": "0.5 -1 2"}, "ElementSpacing: spacings must be positive"),
    ({"ElementSpacing": "0.5 nan 2"}, "ElementSpacing: values must be finite"),
    ({"Offset": "1 2"}, "Offset: expected 3 values"),
    ({"TransformMatrix": "1 0 0 0 1 0 0 0"}, "TransformMatrix: expected 9 values"),
    ({"TransformMatrix": "1 0 0 1 0 0 0 0 1"}, "TransformMatrix: matrix is singular"),
    ({"ElementType": "MET_FOO"}, "ElementType: unknown or unsupported type 'MET_FOO'"),
    ({"BinaryDataByteOrderMSB": "maybe"}, "BinaryDataByteOrderMSB: expected True or False"),
    ({"CompressedData": "perhaps"}, "CompressedData: expected True or False"),
    ({"ObjectType": "Mesh"}, "ObjectType: expected Image"),
    ({"BinaryData": "False"}, "BinaryData: ASCII"),
    ({"ElementDataFile": "LIST"}, "ElementDataFile: only one data file"),
    ({"ElementDataFile": "slice%03d.raw"}, "ElementDataFile: only one data file"),
]


@pytest.fixture
def good_mhd(tmp_path):
    return write_scan(tmp_path / "scan.mhd", volume((2, 3, 4)))


@pytest.mark.parametrize("change, match", BAD_FIELDS, ids=[f"{m.split(':')[0]}-{i}" for i, (_, m) in enumerate(BAD_FIELDS)])
def test_bad_or_missing_field_names_file_and_field(good_mhd, change, match):
    edit_header(good_mhd, change)
    with pytest.raises(ScanError, match=match) as info:
        read_header(good_mhd)
    assert str(good_mhd) in str(info.value)
    assert info.value.path == good_mhd


def test_missing_element_data_file(good_mhd):
    edit_header(good_mhd, {"ElementDataFile": None})
    with pytest.raises(ScanError, match=r"scan\.mhd: ElementDataFile: missing"):
        read_header(good_mhd)


def test_field_given_twice_and_conflicting_synonyms(good_mhd):
    text = good_mhd.read_text()
    good_mhd.write_text(text.replace("ElementType", "DimSize = 4 3 2\nElementType"))
    with pytest.raises(ScanError, match="DimSize: given twice"):
        read_header(good_mhd)
    good_mhd.write_text(text.replace("ElementType", "Origin = 1 2 3\nElementType"))
    with pytest.raises(ScanError, match=r"Origin: given twice \(also as Offset\)"):
        read_header(good_mhd)


def test_line_without_equals(good_mhd):
    good_mhd.write_text(good_mhd.read_text().replace("NDims = 3", "NDims 3"))
    with pytest.raises(ScanError, match=r"scan\.mhd: line 2: expected 'Key = Value'"):
        read_header(good_mhd)


def test_garbage_binary_header(tmp_path):
    path = tmp_path / "garbage.mhd"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(ScanError, match=r"garbage\.mhd: line 1: "):
        read_header(path)


def test_huge_line_is_not_read_whole(tmp_path):
    path = tmp_path / "big.mhd"
    path.write_bytes(b"A" * 100_000)  # no newline: must not be slurped as one line
    with pytest.raises(ScanError, match=r"big\.mhd: line 1: longer than"):
        read_header(path)


def test_empty_and_unopenable_headers(tmp_path):
    (tmp_path / "empty.mhd").write_bytes(b"")
    with pytest.raises(ScanError, match=r"empty\.mhd: header: empty file"):
        read_header(tmp_path / "empty.mhd")
    with pytest.raises(ScanError, match=r"nothere\.mhd: header: cannot open"):
        read_header(tmp_path / "nothere.mhd")


# --- broken data files ---------------------------------------------------------


def test_missing_raw(good_mhd):
    (good_mhd.parent / "scan.raw").unlink()
    with pytest.raises(ScanError, match=r"scan\.mhd: ElementDataFile: data file .*scan\.raw does not exist"):
        read_volume(read_header(good_mhd))


@pytest.mark.parametrize("cut", [1, 10])
def test_truncated_raw(good_mhd, cut):
    raw = good_mhd.parent / "scan.raw"
    raw.write_bytes(raw.read_bytes()[:-cut])
    with pytest.raises(ScanError, match=r"scan\.raw: DimSize: .*DimSize 4x3x2 of MET_SHORT") as info:
        read_volume(read_header(good_mhd))
    assert info.value.path == raw


def test_dimsize_larger_than_raw(good_mhd):
    edit_header(good_mhd, {"DimSize": "4 3 3"})
    with pytest.raises(ScanError, match=r"scan\.raw: DimSize: file has 48 data bytes.*needs 72 bytes"):
        read_volume(read_header(good_mhd))


def test_raw_longer_than_dimsize(good_mhd):
    raw = good_mhd.parent / "scan.raw"
    raw.write_bytes(raw.read_bytes() + b"\0\0")
    with pytest.raises(ScanError, match=r"scan\.raw: DimSize"):
        read_volume(read_header(good_mhd))


@pytest.fixture
def zraw_mhd(tmp_path):
    return write_scan(tmp_path / "z.mhd", volume((2, 3, 4)), compress=True)


def test_truncated_zraw(zraw_mhd):
    z = zraw_mhd.parent / "z.zraw"
    n = z.stat().st_size
    z.write_bytes(z.read_bytes()[:-8])
    match = rf"z\.zraw: CompressedDataSize: header z.mhd says {n} bytes, the file has {n - 8}"
    with pytest.raises(ScanError, match=match):
        read_volume(read_header(zraw_mhd))
    edit_header(zraw_mhd, {"CompressedDataSize": None})
    with pytest.raises(ScanError, match=r"z\.zraw: CompressedData: compressed stream is truncated"):
        read_volume(read_header(zraw_mhd))


def test_bad_compressed_data_size(zraw_mhd):
    edit_header(zraw_mhd, {"CompressedDataSize": "-3"})
    with pytest.raises(ScanError, match=r"z\.mhd: CompressedDataSize: expected a positive byte count"):
        read_header(zraw_mhd)


def test_corrupt_zraw(zraw_mhd):
    z = zraw_mhd.parent / "z.zraw"
    z.write_bytes(b"this is not zlib at all".ljust(z.stat().st_size, b"!"))
    with pytest.raises(ScanError, match=r"z\.zraw: CompressedData: corrupt compressed data"):
        read_volume(read_header(zraw_mhd))


@pytest.mark.parametrize("dims, got", [("4 3 1", "more data"), ("4 3 3", "48 bytes")])
def test_zraw_size_not_matching_dimsize(zraw_mhd, dims, got):
    edit_header(zraw_mhd, {"DimSize": dims})
    with pytest.raises(ScanError, match=rf"z\.zraw: DimSize: decompresses to {got}"):
        read_volume(read_header(zraw_mhd))


def test_concatenated_and_gzip_streams(zraw_mhd):
    # Other writers split large volumes into several deflate streams, or gzip.
    data = volume((2, 3, 4)).tobytes()
    edit_header(zraw_mhd, {"CompressedDataSize": None})
    z = zraw_mhd.parent / "z.zraw"
    z.write_bytes(zlib.compress(data[:10]) + zlib.compress(data[10:]))
    np.testing.assert_array_equal(read_volume(read_header(zraw_mhd)), volume((2, 3, 4)))
    import gzip

    z.write_bytes(gzip.compress(data))
    np.testing.assert_array_equal(read_volume(read_header(zraw_mhd)), sitk_array(zraw_mhd))


def test_scan_error_pickles():
    err = ScanError("/x/y.mhd", "DimSize", "bad")
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == str(err) == "/x/y.mhd: DimSize: bad"
    assert isinstance(again, ValueError)


def test_header_that_is_a_directory(tmp_path):
    (tmp_path / "dir.mhd").mkdir()
    with pytest.raises(ScanError, match=r"dir\.mhd: header: cannot open"):
        read_header(tmp_path / "dir.mhd")
