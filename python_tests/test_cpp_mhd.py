"""The C++ MetaImage reader (cpp_app/metaimage.cpp), driven through torchlite-mhd-info.

Truths: numpy's reading of the bytes we write (every element type, both byte
orders, every data layout), the Python reader torchlite.data.metaimage on the
synthetic LUNA16 scans (itself tested against SimpleITK), hand-computed
geometry, and for broken files the contract of issue 6: exit status 2 and one
`error: <file>: <field>: <reason>` line, never a signal.

The C++ targets are built once per session with CMake into build/cpp (the
folder `make cpp` uses, so reruns are incremental; TORCHLITE_CPP_BUILD names
another): python_tests/_cpp_build.py, shared with test_cpp_app.py.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

from _cpp_build import cpp_build_dir
from torchlite.data import metaimage as py_reader
from torchlite.data.synth import generate_dataset

EXIT_BAD_INPUT = 2


def _run(cmd, **kw):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)


@pytest.fixture(scope="session")
def cpp_build():
    """Configure and build the C++ targets once (shared with test_cpp_app.py); the binaries' folder."""
    return cpp_build_dir()


def mhd_info(build: Path, *args, voxels_out: Path | None = None):
    extra = ["--voxels-out", voxels_out] if voxels_out else []
    return _run([build / "torchlite-mhd-info", *extra, *args], timeout=120)


def read_ok(build: Path, mhd: Path, tmp_path: Path):
    """(header JSON, voxels as the C++ reader returned them)."""
    out = tmp_path / (mhd.name + ".voxels")
    result = mhd_info(build, mhd, voxels_out=out)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    voxels = np.fromfile(out, dtype=np.dtype(info["dtype"])).reshape(info["shape_zyx"])
    return info, voxels


def assert_clean_error(result, field: str):
    """Issue 6's contract for a file the reader refuses."""
    assert result.returncode >= 0, f"killed by signal {-result.returncode}: {result.stderr[-2000:]}"
    assert result.returncode == EXIT_BAD_INPUT, (result.returncode, result.stderr[-2000:])
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith("error: ") and f": {field}: " in lines[0], lines[0]


# --- the operator library survives the link ----------------------------------

def test_linked_operators_are_registered_and_run(cpp_build):
    result = _run([cpp_build / "torchlite-mhd-info", "--check-ops"], timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "torchlite::crop3d registered: yes" in result.stdout
    assert "torchlite::crop3d CPU kernel matches slicing: yes" in result.stdout


# --- parity with the Python reader on synthetic LUNA16 scans -----------------

@pytest.fixture(scope="session")
def synth_scans(tmp_path_factory):
    root = tmp_path_factory.mktemp("cpp_synth")
    summary = generate_dataset(root, 2, seed=0, size="small", progress=False)
    assert summary.n_flipped >= 1  # seed 0: one of the two scans has flipped axes
    return sorted(root.glob("subset*/*.mhd"))


def test_synthetic_scans_read_like_the_python_reader(cpp_build, synth_scans, tmp_path):
    directions = []
    for mhd in synth_scans:
        info, voxels = read_ok(cpp_build, mhd, tmp_path)
        header = py_reader.read_header(mhd)
        expected = py_reader.read_volume(header)
        assert tuple(info["shape_zyx"]) == header.shape == expected.shape
        assert tuple(info["size_xyz"]) == header.dim_size
        # %.17g round-trips a double exactly: the numbers are the same numbers.
        assert tuple(info["spacing"]) == header.spacing
        assert tuple(info["origin"]) == header.origin
        assert tuple(info["direction"]) == header.direction
        assert info["element_type"] == "MET_SHORT" and voxels.dtype == np.int16
        np.testing.assert_array_equal(voxels, expected)
        assert info["stats"]["sum"] == float(expected.sum(dtype=np.float64))
        assert (info["stats"]["min"], info["stats"]["max"]) == (expected.min(), expected.max())
        directions.append(tuple(info["direction"]))
    assert any(d != (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0) for d in directions)


# --- every element type, byte order and data layout, against numpy ----------

NUMPY_TYPES = {
    "MET_CHAR": "i1", "MET_UCHAR": "u1", "MET_SHORT": "i2", "MET_USHORT": "u2",
    "MET_INT": "i4", "MET_UINT": "u4", "MET_LONG": "i4", "MET_ULONG": "u4",
    "MET_LONG_LONG": "i8", "MET_ULONG_LONG": "u8", "MET_FLOAT": "f4", "MET_DOUBLE": "f8",
}
SHAPE_ZYX = (3, 4, 5)


def sample_values(element_type: str) -> np.ndarray:
    """Distinct values in the type's range (negative ones for signed types),
    all exactly representable in float32, so a swapped axis or byte shows."""
    dtype = np.dtype(NUMPY_TYPES[element_type])
    n = int(np.prod(SHAPE_ZYX))
    if dtype.kind == "f":
        values = np.linspace(-1024.0, 3071.0, n) + 0.25
    elif dtype.kind == "u":
        values = np.arange(n) * (255 // n) if dtype.itemsize == 1 else np.arange(n) * 997 + 3
    else:
        values = (np.arange(n) - n // 2) * (127 // n) if dtype.itemsize == 1 else (np.arange(n) - n // 2) * 991
    return values.astype(dtype).reshape(SHAPE_ZYX)


def header_text(element_type: str, data_file: str, **extra) -> str:
    fields = {
        "ObjectType": "Image", "NDims": "3", "BinaryData": "True",
        "BinaryDataByteOrderMSB": "False", "CompressedData": "False",
        # Per-axis rows (axis x points along +y, ...): SimpleITK's direction is
        # the transpose, hand-computed in EXPECTED_DIRECTION.
        "TransformMatrix": "0 1 0 0 0 1 1 0 0",
        "Offset": "-10.5 3.25 100", "ElementSpacing": "0.7 0.8 2.5",
        "DimSize": " ".join(str(s) for s in SHAPE_ZYX[::-1]), "ElementType": element_type,
    }
    fields.update(extra)
    lines = [f"{k} = {v}" for k, v in fields.items() if v is not None]
    return "\n".join(lines + [f"ElementDataFile = {data_file}"]) + "\n"


EXPECTED_DIRECTION = (0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def expected_voxels(values: np.ndarray) -> np.ndarray:
    """The C++ reader's documented output: int16 for MET_SHORT, else float32."""
    return values if values.dtype == np.int16 else values.astype(np.float32)


@pytest.mark.parametrize("big_endian", [False, True], ids=["le", "be"])
@pytest.mark.parametrize("element_type", sorted(NUMPY_TYPES))
def test_every_element_type_and_byte_order(cpp_build, tmp_path, element_type, big_endian):
    values = sample_values(element_type)
    stored = values.astype(values.dtype.newbyteorder(">" if big_endian else "<"))
    (tmp_path / "scan.raw").write_bytes(stored.tobytes())
    mhd = tmp_path / "scan.mhd"
    mhd.write_text(header_text(element_type, "scan.raw", BinaryDataByteOrderMSB=str(big_endian)))
    info, voxels = read_ok(cpp_build, mhd, tmp_path)
    assert info["element_type"] == element_type and info["msb"] is big_endian
    assert info["size_xyz"] == [5, 4, 3] and info["shape_zyx"] == [3, 4, 5]
    assert info["spacing"] == [0.7, 0.8, 2.5] and info["origin"] == [-10.5, 3.25, 100.0]
    assert tuple(info["direction"]) == EXPECTED_DIRECTION
    want = expected_voxels(values)
    assert voxels.dtype == want.dtype
    np.testing.assert_array_equal(voxels, want)


def _zlib_two_streams(data: bytes) -> bytes:
    half = len(data) // 2
    return zlib.compress(data[:half]) + zlib.compress(data[half:])


# name -> (header fields, data-file name, bytes of that file, after the header for LOCAL)
def _layouts(data: bytes):
    packed = zlib.compress(data, 9)
    return {
        "subfolder": ({}, "voxels/scan.raw", data),
        "header_size": ({"HeaderSize": "7"}, "scan.raw", b"junk..." + data),
        "header_size_minus_one": ({"HeaderSize": "-1"}, "scan.raw", b"any preamble" + data),
        "local": ({}, "LOCAL", data),
        "zlib": ({"CompressedData": "True"}, "scan.zraw", packed),
        "zlib_sized": ({"CompressedData": "True", "CompressedDataSize": str(len(packed))}, "scan.zraw",
                       packed + b"ignored tail"),
        "zlib_local": ({"CompressedData": "True", "CompressedDataSize": str(len(packed))}, "LOCAL", packed),
        "gzip": ({"CompressedData": "True"}, "scan.zraw", gzip.compress(data)),
        "zlib_two_streams": ({"CompressedData": "True"}, "scan.zraw", _zlib_two_streams(data)),
    }


@pytest.mark.parametrize("layout", list(_layouts(b"")))
def test_data_layouts(cpp_build, tmp_path, layout):
    values = sample_values("MET_SHORT")
    stored = values.astype(">i2")  # big-endian too, so swapping runs after inflating
    fields, data_file, blob = _layouts(stored.tobytes())[layout]
    text = header_text("MET_SHORT", data_file, BinaryDataByteOrderMSB="True", **fields)
    mhd = tmp_path / "scan.mhd"
    if data_file == "LOCAL":
        mhd.write_bytes(text.encode() + blob)
    else:
        (tmp_path / data_file).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / data_file).write_bytes(blob)
        mhd.write_text(text)
    info, voxels = read_ok(cpp_build, mhd, tmp_path)
    np.testing.assert_array_equal(voxels, values)
    assert info["compressed"] is ("CompressedData" in fields)
    # The Python reader agrees (the rules are shared).
    np.testing.assert_array_equal(py_reader.read_volume(py_reader.read_header(mhd)), values)


def test_synonyms_and_defaults(cpp_build, tmp_path):
    values = sample_values("MET_UCHAR")
    (tmp_path / "scan.raw").write_bytes(values.tobytes())
    mhd = tmp_path / "scan.mhd"
    # Origin/Orientation spell Offset/TransformMatrix; no byte order, no
    # ObjectType: MetaIO's defaults. Whitespace around '=' and CRLF endings.
    text = header_text("MET_UCHAR", "scan.raw", Offset=None, TransformMatrix=None, BinaryDataByteOrderMSB=None,
                       ObjectType=None, Origin="1 2 3", Orientation="-1 0 0 0 1 0 0 0 -1")
    mhd.write_bytes(text.replace(" = ", "   =\t").replace("\n", "\r\n").encode())
    info, voxels = read_ok(cpp_build, mhd, tmp_path)
    assert info["origin"] == [1.0, 2.0, 3.0]
    assert info["direction"] == [-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0]
    assert info["msb"] is False
    np.testing.assert_array_equal(voxels, values.astype(np.float32))


# --- the broken corpus --------------------------------------------------------

GOOD_DATA = sample_values("MET_SHORT").astype("<i2").tobytes()


def _write(tmp_path: Path, text: str | bytes, data: bytes | None = GOOD_DATA, data_name="scan.raw") -> Path:
    mhd = tmp_path / "scan.mhd"
    mhd.write_bytes(text.encode() if isinstance(text, str) else text)
    if data is not None:
        (tmp_path / data_name).write_bytes(data)
    return mhd


def _header(**extra) -> str:
    return header_text("MET_SHORT", "scan.raw", **extra)


def _no_such_header(tmp_path):
    return tmp_path / "absent.mhd"


def _folder_as_header(tmp_path):
    (tmp_path / "folder.mhd").mkdir()
    return tmp_path / "folder.mhd"


def _folder_as_data(tmp_path):
    (tmp_path / "scan.raw").mkdir()
    return _write(tmp_path, _header(), data=None)


def _huge_line(tmp_path):
    return _write(tmp_path, "NDims = 3\nDimSize = " + "1 " * 500_000 + "\n" + _header(NDims=None))


def _duplicate(tmp_path):
    return _write(tmp_path, _header().replace("Offset =", "Origin = 1 2 3\nOffset ="))


# (case, how to make it, field named by the C++ error, field named by the
# Python reader's ScanError, or None where it words the problem elsewhere)
CORPUS = [
    ("truncated_raw", lambda p: _write(p, _header(), GOOD_DATA[:-3]), "DimSize", "DimSize"),
    ("too_much_raw", lambda p: _write(p, _header(), GOOD_DATA + b"\0\0"), "DimSize", "DimSize"),
    ("dimsize_overflow_2^40", lambda p: _write(p, _header(DimSize="1099511627776 1099511627776 1")),
     "DimSize", "DimSize"),
    ("dimsize_beyond_int64", lambda p: _write(p, _header(DimSize="99999999999999999999 1 1")),
     "DimSize", "DimSize"),
    ("dimsize_negative", lambda p: _write(p, _header(DimSize="5 -4 3")), "DimSize", "DimSize"),
    ("dimsize_two_values", lambda p: _write(p, _header(DimSize="5 4")), "DimSize", "DimSize"),
    ("dimsize_not_a_number", lambda p: _write(p, _header(DimSize="5 4 three")), "DimSize", "DimSize"),
    ("spacing_negative", lambda p: _write(p, _header(ElementSpacing="-0.7 0.8 2.5")),
     "ElementSpacing", "ElementSpacing"),
    ("spacing_zero", lambda p: _write(p, _header(ElementSpacing="0.7 0 2.5")), "ElementSpacing", "ElementSpacing"),
    ("spacing_missing", lambda p: _write(p, _header(ElementSpacing=None)), "ElementSpacing", "ElementSpacing"),
    ("origin_nan", lambda p: _write(p, _header(Offset="nan 0 0")), "Offset", "Offset"),
    ("origin_inf", lambda p: _write(p, _header(Offset="0 inf 0")), "Offset", "Offset"),
    ("direction_singular", lambda p: _write(p, _header(TransformMatrix="1 0 0 1 0 0 0 0 1")),
     "TransformMatrix", "TransformMatrix"),
    ("unknown_type", lambda p: _write(p, _header(ElementType="MET_FOO")), "ElementType", "ElementType"),
    ("ndims_2", lambda p: _write(p, _header(NDims="2")), "NDims", "NDims"),
    ("two_channels", lambda p: _write(p, _header(ElementNumberOfChannels="2")),
     "ElementNumberOfChannels", "ElementNumberOfChannels"),
    ("ascii_data", lambda p: _write(p, _header(BinaryData="False")), "BinaryData", "BinaryData"),
    ("bad_bool", lambda p: _write(p, _header(BinaryDataByteOrderMSB="maybe")),
     "BinaryDataByteOrderMSB", "BinaryDataByteOrderMSB"),
    ("duplicate_field", _duplicate, "Offset", "Offset"),
    ("nul_byte_in_header", lambda p: _write(p, _header().replace("DimSize = 5", "DimSize = 5\0")), "line 9",
     None),
    ("control_byte_in_header", lambda p: _write(p, _header().replace("NDims", "ND\x01ims")), "line 2", None),
    ("not_ascii", lambda p: _write(p, _header().replace("Image", "Imag\xe9")), "line 1", "line 1"),
    ("huge_header_line", _huge_line, "line 2", "line 2"),
    ("raw_file_as_header", lambda p: _write(p, np.arange(300_000, dtype=np.int32).tobytes()), "line 1", "line 1"),
    ("empty_header", lambda p: _write(p, ""), "header", "header"),
    ("no_element_data_file", lambda p: _write(p, _header().replace("ElementDataFile", "# ElementData")),
     "ElementDataFile", "ElementDataFile"),
    ("line_without_equals", lambda p: _write(p, "NDims = 3\njust words\n" + _header(NDims=None)), "line 2",
     "line 2"),
    ("missing_data_file", lambda p: _write(p, _header(), data=None), "ElementDataFile", "ElementDataFile"),
    ("data_file_list", lambda p: _write(p, _header().replace("= scan.raw", "= LIST")), "ElementDataFile",
     "ElementDataFile"),
    ("data_is_a_folder", _folder_as_data, "ElementDataFile", None),
    ("header_absent", _no_such_header, "header", "header"),
    ("header_is_a_folder", _folder_as_header, "header", "header"),
    ("header_size_below_minus_one", lambda p: _write(p, _header(HeaderSize="-2")), "HeaderSize", "HeaderSize"),
    ("header_size_past_end", lambda p: _write(p, _header(HeaderSize="9223372036854775807")), "DimSize", "DimSize"),
    ("local_truncated", lambda p: _write(p, _header().replace("= scan.raw", "= LOCAL").encode() + GOOD_DATA[:9],
                                         data=None), "DimSize", "DimSize"),
    ("compressed_garbage", lambda p: _write(p, _header(CompressedData="True"), b"this is not zlib" * 4),
     "CompressedData", "CompressedData"),
    ("compressed_truncated", lambda p: _write(p, _header(CompressedData="True"), zlib.compress(GOOD_DATA)[:-6]),
     "CompressedData", "CompressedData"),
    ("compressed_too_much", lambda p: _write(p, _header(CompressedData="True"), zlib.compress(GOOD_DATA * 2)),
     "DimSize", "DimSize"),
    ("compressed_too_little", lambda p: _write(p, _header(CompressedData="True"), zlib.compress(GOOD_DATA[:50])),
     "DimSize", "DimSize"),
    ("compressed_size_past_end", lambda p: _write(p, _header(CompressedData="True", CompressedDataSize="100000"),
                                                  zlib.compress(GOOD_DATA)), "CompressedDataSize",
     "CompressedDataSize"),
    ("compressed_size_zero", lambda p: _write(p, _header(CompressedData="True", CompressedDataSize="0"),
                                              zlib.compress(GOOD_DATA)), "CompressedDataSize", "CompressedDataSize"),
    # 2^34 voxels from a 1 KB file: refused before allocating 32 GB.
    ("decompression_bomb", lambda p: _write(p, _header(CompressedData="True", DimSize="4096 4096 1024"),
                                            zlib.compress(b"\0" * 100_000, 9)), "DimSize", "DimSize"),
]


@pytest.mark.parametrize("case, make, field, py_field", CORPUS, ids=[c[0] for c in CORPUS])
def test_broken_file_gives_one_clean_error(cpp_build, tmp_path, case, make, field, py_field):
    mhd = make(tmp_path)
    assert_clean_error(mhd_info(cpp_build, mhd), field)
    # The Python reader refuses it too (naming the same field where it words
    # the problem the same way).
    with pytest.raises(py_reader.ScanError) as err:
        py_reader.read_volume(py_reader.read_header(mhd))
    if py_field is not None:
        assert err.value.field == py_field


def test_error_line_stays_one_line_for_hostile_names(cpp_build, tmp_path):
    # A data file name with a carriage return must not split the message.
    mhd = _write(tmp_path, _header().replace("= scan.raw", "= sc\ran.raw"), data=None)
    result = mhd_info(cpp_build, mhd)
    assert_clean_error(result, "ElementDataFile")
    assert "\\x0d" in result.stderr


# --- fuzzing (AddressSanitizer + UBSan) ----------------------------------------

def _fuzz_engine(build: Path) -> str:
    return (build / "fuzz_engine.txt").read_text().strip()


def test_broken_corpus_under_sanitizers(cpp_build, tmp_path):
    """Every corpus file, whole, through the sanitized parser and decoder."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for case, make, _, _ in CORPUS:
        if case in ("header_absent", "header_is_a_folder"):
            continue
        folder = tmp_path / case
        folder.mkdir()
        mhd = make(folder)
        (corpus / f"{case}.mhd").write_bytes(mhd.read_bytes()[:1 << 16])
    # Files only (no folder): each runs once, with libFuzzer as with the standalone driver.
    result = _run([cpp_build / "fuzz_mhd_header", f"-artifact_prefix={tmp_path}/", *sorted(corpus.iterdir())],
                  timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]


@pytest.mark.parametrize("engine", ["libFuzzer", "standalone"])
def test_fuzz_header_parser_briefly(cpp_build, tmp_path, engine):
    """~10 s of fuzzing from the seed headers: no crash, no sanitizer report."""
    built = _fuzz_engine(cpp_build)
    if built != engine:
        pytest.skip(f"fuzz_mhd_header was built with the {built} engine, not {engine}"
                    + (" (no compiler with -fsanitize=fuzzer here, e.g. clang: the standalone random-mutation "
                       "driver, not coverage-guided, fuzzes instead)" if engine == "libFuzzer" else ""))
    # Seeds with real compressed LOCAL data (CMake's seeds are text only), so
    # mutations reach the inflater with streams that start out valid.
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    voxels = sample_values("MET_SHORT").astype(">i2").tobytes()
    for name, blob in (("zlib", zlib.compress(voxels)), ("gzip", gzip.compress(voxels))):
        text = header_text("MET_SHORT", "LOCAL", BinaryDataByteOrderMSB="True", CompressedData="True")
        (seeds / f"{name}.mhd").write_bytes(text.encode() + blob)
    result = _run([cpp_build / "fuzz_mhd_header", "-max_total_time=10", "-seed=7", f"-artifact_prefix={tmp_path}/",
                   seeds, cpp_build / "fuzz_seeds"], timeout=180, cwd=tmp_path)
    crashes = list(tmp_path.glob("crash-*"))
    assert result.returncode == 0 and not crashes, (
        f"crash input {crashes}: {crashes[0].read_bytes()[:300]!r}\n" if crashes else "") + result.stderr[-4000:]
