"""MetaImage (.mhd) headers and their voxel data, read without SimpleITK.

A header is ``Key = Value`` lines ending with ``ElementDataFile``; the voxels
live in the named file (relative to the header), or right after the header
when it says ``LOCAL``. Only what a 3D CT scan needs is accepted; anything
else raises :class:`ScanError` naming the file and the field, so a dataset can
report which scan is broken and why.

Parsing rules follow MetaIO (what ITK/SimpleITK read): keys are
case-sensitive; ``Offset``/``Origin``/``Position``,
``TransformMatrix``/``Orientation``/``Rotation`` and
``ElementByteOrderMSB``/``BinaryDataByteOrderMSB`` are synonyms; optional
fields take MetaIO's defaults (origin 0, identity direction, little-endian,
uncompressed, no header bytes). ``ElementSpacing`` is required although MetaIO
would default it to 1 mm: a CT without spacing is a broken CT.

MetaIO stores ``TransformMatrix`` row by row *per axis* (row k = direction of
axis k), i.e. the transpose of SimpleITK's ``GetDirection()``; ``direction``
here is SimpleITK's matrix.
"""

from __future__ import annotations

import math
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from torchlite.data.geometry import Geometry

# MetaIO's type names and sizes (MET_LONG is 4 bytes in MetaIO, whatever C's long is).
ELEMENT_TYPES: dict[str, str] = {
    "MET_CHAR": "i1",
    "MET_UCHAR": "u1",
    "MET_SHORT": "i2",
    "MET_USHORT": "u2",
    "MET_INT": "i4",
    "MET_UINT": "u4",
    "MET_LONG": "i4",
    "MET_ULONG": "u4",
    "MET_LONG_LONG": "i8",
    "MET_ULONG_LONG": "u8",
    "MET_FLOAT": "f4",
    "MET_DOUBLE": "f8",
}

_SYNONYMS = {
    "Origin": "Offset",
    "Position": "Offset",
    "Orientation": "TransformMatrix",
    "Rotation": "TransformMatrix",
    "BinaryDataByteOrderMSB": "ElementByteOrderMSB",
}
_REQUIRED = ("NDims", "DimSize", "ElementSpacing", "ElementType", "ElementDataFile")
# A real header is a few hundred bytes; these bounds stop us from reading a
# multi-GB binary file line by line when someone points us at the wrong file.
_MAX_LINE_BYTES = 4096
_MAX_LINES = 200


class ScanError(ValueError):
    """A scan on disk cannot be read: names the file, the field and why."""

    def __init__(self, path: str | os.PathLike, field: str, reason: str):
        self.path = Path(path)
        self.field = field
        self.reason = reason
        super().__init__(f"{self.path}: {field}: {reason}")

    def __reduce__(self):  # picklable across DataLoader worker processes
        return (type(self), (self.path, self.field, self.reason))


@dataclass(frozen=True)
class MetaImageHeader:
    """The fields of a 3D .mhd header that locate and describe its voxels."""

    path: Path
    dim_size: tuple[int, int, int]  # X, Y, Z as written (the array is Z, Y, X)
    spacing: tuple[float, float, float]  # X, Y, Z, mm
    origin: tuple[float, float, float]  # X, Y, Z, mm
    direction: tuple[float, ...]  # 9 values, row-major, SimpleITK's GetDirection()
    element_type: str
    big_endian: bool
    compressed: bool
    compressed_size: int | None  # CompressedDataSize: bytes of compressed data, if given
    header_size: int  # bytes to skip in the data file; -1: the data ends the file
    data_path: Path
    local_offset: int  # LOCAL data: bytes of header text before it; else 0

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape (I, R, C) = (Z, Y, X)."""
        return self.dim_size[::-1]

    @property
    def dtype(self) -> np.dtype:
        """Element type with the file's byte order."""
        return np.dtype(ELEMENT_TYPES[self.element_type]).newbyteorder(">" if self.big_endian else "<")

    @property
    def nbytes(self) -> int:
        return math.prod(self.dim_size) * self.dtype.itemsize

    @property
    def geometry(self) -> Geometry:
        return Geometry(self.origin, self.spacing, np.reshape(self.direction, (3, 3)), self.shape)


def _read_fields(path: Path) -> tuple[dict[str, tuple[str, str]], int]:
    """Canonical key -> (key as written, value); and the header's byte length."""
    fields: dict[str, tuple[str, str]] = {}
    offset = 0
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise ScanError(path, "header", f"cannot open: {exc.strerror or exc}") from exc
    with f:
        for line_no in range(1, _MAX_LINES + 1):
            raw = f.readline(_MAX_LINE_BYTES + 1)
            if not raw:
                break
            offset += len(raw)
            where = f"line {line_no}"
            if len(raw) > _MAX_LINE_BYTES:
                raise ScanError(path, where, f"longer than {_MAX_LINE_BYTES} bytes: not a MetaImage header")
            try:
                text = raw.decode("ascii").strip()
            except UnicodeDecodeError:
                raise ScanError(path, where, "not ASCII text: not a MetaImage header") from None
            if not text:
                continue
            key, sep, value = text.partition("=")
            key, value = key.strip(), value.strip()
            if not sep or not key:
                raise ScanError(path, where, f"expected 'Key = Value', got {text[:60]!r}")
            canonical = _SYNONYMS.get(key, key)
            if canonical in fields:
                raise ScanError(path, key, f"given twice (also as {fields[canonical][0]})")
            fields[canonical] = (key, value)
            if key == "ElementDataFile":  # MetaIO: the last field; LOCAL data follows
                return fields, offset
        else:
            raise ScanError(path, "ElementDataFile", f"not found in the first {_MAX_LINES} lines")
    if not fields:
        raise ScanError(path, "header", "empty file")
    raise ScanError(path, "ElementDataFile", "missing")


def _numbers(path: Path, key: str, value: str, count: int, kind: type) -> list:
    parts = value.split()
    try:
        numbers = [kind(p) for p in parts]
    except ValueError:
        raise ScanError(path, key, f"expected {count} {kind.__name__} values, got {value!r}") from None
    if len(numbers) != count:
        raise ScanError(path, key, f"expected {count} values, got {len(numbers)} ({value!r})")
    if kind is float and not all(math.isfinite(n) for n in numbers):
        raise ScanError(path, key, f"values must be finite, got {value!r}")
    return numbers


def _bool(path: Path, key: str, value: str) -> bool:
    low = value.lower()
    if low in ("true", "1"):
        return True
    if low in ("false", "0"):
        return False
    raise ScanError(path, key, f"expected True or False, got {value!r}")


def read_header(path: str | os.PathLike) -> MetaImageHeader:
    """Parse and validate a 3D .mhd header; raise ScanError on any problem."""
    path = Path(path)
    fields, header_bytes = _read_fields(path)
    for key in _REQUIRED:
        if key not in fields:
            raise ScanError(path, key, "missing")
    get = fields.get  # canonical key -> (key as written, value) or None

    if (f := get("ObjectType")) and f[1] != "Image":
        raise ScanError(path, "ObjectType", f"expected Image, got {f[1]!r}")
    key, value = get("NDims")
    if value != "3":
        raise ScanError(path, key, f"only 3D scans are supported, got {value!r}")
    if (f := get("ElementNumberOfChannels")) and f[1] != "1":
        raise ScanError(path, f[0], f"only single-channel scans are supported, got {f[1]!r}")
    if (f := get("BinaryData")) and not _bool(path, *f):
        raise ScanError(path, f[0], "ASCII voxel data is not supported")

    key, value = get("DimSize")
    dim_size = _numbers(path, key, value, 3, int)
    if min(dim_size) <= 0:
        raise ScanError(path, key, f"sizes must be positive, got {value!r}")
    key, value = get("ElementSpacing")
    spacing = _numbers(path, key, value, 3, float)
    if min(spacing) <= 0:
        raise ScanError(path, key, f"spacings must be positive, got {value!r}")
    origin = [0.0, 0.0, 0.0]
    if f := get("Offset"):
        origin = _numbers(path, *f, 3, float)
    direction = np.eye(3)
    if f := get("TransformMatrix"):
        direction = np.reshape(_numbers(path, *f, 9, float), (3, 3)).T
        if abs(np.linalg.det(direction)) < 1e-6:
            raise ScanError(path, f[0], f"matrix is singular: {f[1]!r}")

    key, value = get("ElementType")
    if value not in ELEMENT_TYPES:
        raise ScanError(path, key, f"unknown or unsupported type {value!r} (supported: {', '.join(ELEMENT_TYPES)})")
    element_type = value
    big_endian = _bool(path, *get("ElementByteOrderMSB")) if get("ElementByteOrderMSB") else False
    compressed = _bool(path, *get("CompressedData")) if get("CompressedData") else False
    compressed_size = None
    if compressed and (f := get("CompressedDataSize")):
        (compressed_size,) = _numbers(path, *f, 1, int)
        if compressed_size <= 0:
            raise ScanError(path, f[0], f"expected a positive byte count, got {f[1]!r}")
    header_size = 0
    if f := get("HeaderSize"):
        (header_size,) = _numbers(path, *f, 1, int)
        if header_size < -1 or (header_size == -1 and compressed):
            raise ScanError(path, f[0], f"expected a byte count >= 0 (or -1 for uncompressed data), got {f[1]!r}")

    key, value = get("ElementDataFile")
    if value == "LOCAL":
        data_path, local_offset = path, header_bytes
    elif not value or value.startswith("LIST") or "%" in value:
        raise ScanError(path, key, f"only one data file or LOCAL is supported, got {value!r}")
    else:
        data_path, local_offset = path.parent / value, 0

    return MetaImageHeader(
        path=path,
        dim_size=tuple(dim_size),
        spacing=tuple(spacing),
        origin=tuple(origin),
        direction=tuple(float(v) for v in direction.ravel()),
        element_type=element_type,
        big_endian=big_endian,
        compressed=compressed,
        compressed_size=compressed_size,
        header_size=header_size,
        data_path=data_path,
        local_offset=local_offset,
    )


def _file_size(header: MetaImageHeader) -> int:
    try:
        return header.data_path.stat().st_size
    except FileNotFoundError:
        raise ScanError(header.path, "ElementDataFile", f"data file {header.data_path} does not exist") from None
    except OSError as exc:
        reason = f"cannot stat {header.data_path}: {exc.strerror or exc}"
        raise ScanError(header.path, "ElementDataFile", reason) from exc


def _size_error(header: MetaImageHeader, got: str, need: int) -> ScanError:
    dims = "x".join(str(d) for d in header.dim_size)
    return ScanError(
        header.data_path,
        "DimSize",
        f"{got}, but DimSize {dims} of {header.element_type} ({header.dtype.itemsize} bytes each) "
        f"needs {need} bytes (header {header.path.name})",
    )


def data_offset(header: MetaImageHeader) -> int:
    """Byte offset of the first voxel of uncompressed data, after checking the
    data file's size against DimSize (ScanError when they disagree)."""
    if header.compressed:
        raise ValueError("compressed data has no voxel offset; use read_volume")
    size = _file_size(header)
    start = header.local_offset + max(header.header_size, 0)
    if header.header_size == -1:  # MetaIO: the voxels are the last bytes of the file
        if size - header.local_offset < header.nbytes:
            raise _size_error(header, f"file has {size - header.local_offset} data bytes", header.nbytes)
        return size - header.nbytes
    if size - start != header.nbytes:
        raise _size_error(header, f"file has {size - start} data bytes after {start} header bytes", header.nbytes)
    return start


def memmap_volume(header: MetaImageHeader) -> np.memmap:
    """The uncompressed voxels, memory-mapped read-only: no copy, no read."""
    offset = data_offset(header)
    return np.memmap(header.data_path, dtype=header.dtype, mode="r", offset=offset, shape=header.shape)


def _inflate(header: MetaImageHeader) -> bytes:
    size = _file_size(header)
    start = header.local_offset + header.header_size
    available = max(size - start, 0)
    if header.compressed_size is not None:
        # MetaIO reads exactly CompressedDataSize bytes (and ignores the rest).
        if available < header.compressed_size:
            raise ScanError(
                header.data_path, "CompressedDataSize",
                f"header {header.path.name} says {header.compressed_size} bytes, the file has {available}",
            )
        available = header.compressed_size
    with open(header.data_path, "rb") as f:
        f.seek(start)
        blob = f.read(available)
    out = bytearray()
    try:
        # Inflate at most one byte more than DimSize asks for: enough to tell
        # "too much data" without inflating a bomb.
        while blob and len(out) <= header.nbytes:
            # wbits 47: zlib or gzip stream, as MetaIO accepts; writers may
            # concatenate streams for large volumes.
            d = zlib.decompressobj(47)
            out += d.decompress(blob, header.nbytes + 1 - len(out))
            if not d.eof and len(out) <= header.nbytes:
                raise ScanError(header.data_path, "CompressedData", "compressed stream is truncated")
            blob = d.unused_data
    except zlib.error as exc:
        raise ScanError(header.data_path, "CompressedData", f"corrupt compressed data ({exc})") from exc
    if len(out) != header.nbytes:
        got = "more data" if len(out) > header.nbytes else f"{len(out)} bytes"
        raise _size_error(header, f"decompresses to {got}", header.nbytes)
    return bytes(out)


def read_volume(header: MetaImageHeader) -> np.ndarray:
    """All voxels in memory, native byte order, shape (I, R, C)."""
    if header.compressed:
        arr = np.frombuffer(_inflate(header), dtype=header.dtype).reshape(header.shape)
    else:
        arr = np.array(memmap_volume(header))
    return arr.astype(arr.dtype.newbyteorder("="), copy=False)
