"""An uploaded scan, from the HTTP body to a validated .mhd on local disk.

``POST /v1/analyze`` takes a ``multipart/form-data`` body holding a scan's
``.mhd`` header and its data file (``.raw``, or ``.zraw`` when compressed),
or one ``.zip`` holding them. The body is parsed as it streams in
(python-multipart's push parser) and each file part is written straight to a
fresh temporary folder, counting bytes: past ``max_bytes`` the upload stops
with 413 before the rest is read, so a client cannot fill the disk or the
memory. The folder is removed when the request ends, whatever happens.

What a client sends is never trusted as a path: file names are reduced to a
plain name of safe characters; zip members that climb out of the archive
(``../``, absolute paths) are refused (zip-slip), and extraction counts the
bytes it actually writes against a limit (a zip bomb's declared sizes lie).
The header is read by :mod:`torchlite.data.metaimage`, whose errors name the
field; its ``ElementDataFile`` must be one of the uploaded files, so a header
cannot point the service at a file of its own disk.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import AsyncIterator

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from torchlite.data.metaimage import MetaImageHeader, ScanError, data_offset, read_header

SCAN_SUFFIXES = (".mhd", ".raw", ".zraw")
UPLOAD_SUFFIXES = SCAN_SUFFIXES + (".zip",)
MAX_PARTS = 8  # a scan is two files; anything beyond a few parts is not a scan upload
MAX_ZIP_MEMBERS = 64
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+-]{0,199}$")


class UploadError(Exception):
    """A bad upload: ``status`` (400, 413, 415) and a message for the client."""

    def __init__(self, status: int, message: str):
        self.status, self.message = status, message
        super().__init__(message)


def safe_filename(name: str, where: str) -> str:
    """The plain name of a client's file name; UploadError when it is not a safe one."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    if not _SAFE_NAME.match(base) or ".." in base:
        raise UploadError(400, f"{where}: file name {name!r} is not a plain file name "
                               "(letters, digits, '.', '_', '-', '+'; no path)")
    return base


class _PartWriter:
    """python-multipart callbacks: each file part streamed to ``folder``."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.files: list[Path] = []
        self.parts = 0
        self.finished = False
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[str, bytes] = {}
        self._out = None  # file being written, or None for a part that is not a file

    def callbacks(self) -> dict:
        return {"on_part_begin": self._part_begin, "on_header_field": self._field, "on_header_value": self._value,
                "on_header_end": self._header_end, "on_headers_finished": self._headers_finished,
                "on_part_data": self._data, "on_part_end": self._part_end, "on_end": self._end}

    def _part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise UploadError(400, f"multipart body: more than {MAX_PARTS} parts; send the .mhd and .raw "
                                   "(or one .zip)")
        self._headers = {}

    def _field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header_field.decode("latin-1").strip().lower()] = bytes(self._header_value).strip()
        self._header_field.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        disposition, options = parse_options_header(self._headers.get("content-disposition"))
        if disposition != b"form-data":
            raise UploadError(400, "multipart part without 'Content-Disposition: form-data'")
        field = options.get(b"name", b"").decode("latin-1")
        filename = options.get(b"filename")
        if filename is None:  # a plain form field: not part of a scan; ignore its value
            self._out = None
            return
        name = safe_filename(filename.decode("utf-8", "replace"), f"part {field!r}")
        if not name.lower().endswith(UPLOAD_SUFFIXES):
            raise UploadError(400, f"part {field!r}: file {name!r} is not one of {', '.join(UPLOAD_SUFFIXES)}")
        path = self.folder / name
        if path in self.files:
            raise UploadError(400, f"part {field!r}: file {name!r} uploaded twice")
        self.files.append(path)
        self._out = open(path, "wb")

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._out is not None:
            self._out.write(data[start:end])

    def _part_end(self) -> None:
        self.close()

    def _end(self) -> None:
        self.finished = True

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None


def _extract_zip(archive: Path, folder: Path, max_bytes: int) -> list[Path]:
    """The scan files of ``archive``, written flat into ``folder``, at most ``max_bytes`` in all."""
    where = f"zip {archive.name}"
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as e:
        raise UploadError(400, f"{where}: not a readable zip archive ({e})") from None
    written: list[Path] = []
    total = 0
    with zf:
        members = zf.infolist()
        if len(members) > MAX_ZIP_MEMBERS:
            raise UploadError(400, f"{where}: {len(members)} members, at most {MAX_ZIP_MEMBERS} allowed")
        for info in members:
            name = info.filename
            parts = name.replace("\\", "/").split("/")
            # Zip-slip: refused, not silently flattened, so the client learns its archive is odd.
            if name.startswith(("/", "\\")) or ".." in parts or re.match(r"^[A-Za-z]:", name):
                raise UploadError(400, f"{where}: member {name!r} has a path that leaves the archive")
            if info.is_dir() or parts[0] == "__MACOSX" or parts[-1].startswith("."):
                continue
            if not parts[-1].lower().endswith(SCAN_SUFFIXES):
                continue  # a README or the like beside the scan
            target = folder / safe_filename(parts[-1], f"{where}: member {name!r}")
            if target in written:
                raise UploadError(400, f"{where}: two members named {target.name!r}")
            if total + info.file_size > max_bytes:
                raise UploadError(413, f"{where}: expands to more than the {max_bytes} byte limit")
            try:
                with zf.open(info) as src, open(target, "wb") as dst:
                    written.append(target)
                    # Count what is really inflated: a crafted header's file_size may lie.
                    while chunk := src.read(1 << 20):
                        total += len(chunk)
                        if total > max_bytes:
                            raise UploadError(413, f"{where}: expands to more than the {max_bytes} byte limit")
                        dst.write(chunk)
            except (zipfile.BadZipFile, RuntimeError, NotImplementedError, EOFError, OSError) as e:
                # RuntimeError: encrypted member; NotImplementedError: unknown compression
                raise UploadError(400, f"{where}: member {name!r} cannot be extracted ({e})") from None
    return written


def validate_scan(files: list[Path], folder: Path, max_scan_bytes: int) -> MetaImageHeader:
    """The header of the one uploaded .mhd, checked against its data file."""
    headers = [p for p in files if p.suffix.lower() == ".mhd"]
    if len(headers) != 1:
        names = ", ".join(p.name for p in files) or "no files"
        raise UploadError(400, f"expected one .mhd header and its data file, got {len(headers)} .mhd ({names})")
    try:
        header = read_header(headers[0])
        if header.data_path != header.path:  # not LOCAL: the data must be one of the uploaded files
            if header.data_path.parent != folder or header.data_path not in files:
                uploaded = ", ".join(p.name for p in files if p != headers[0]) or "none"
                raise UploadError(400, f"{headers[0].name}: ElementDataFile names "
                                       f"{client_message(header.data_path, folder)!r}, which was not uploaded "
                                       f"(data files uploaded: {uploaded})")
        if header.nbytes > max_scan_bytes:
            raise UploadError(413, f"{headers[0].name}: DimSize {'x'.join(map(str, header.dim_size))} of "
                                   f"{header.element_type} is {header.nbytes} bytes, more than the "
                                   f"{max_scan_bytes} byte limit")
        if not header.compressed:
            data_offset(header)  # the data file's size against DimSize: ScanError when they disagree
    except ScanError as e:
        raise UploadError(400, client_message(e, folder)) from None
    return header


def client_message(error: Exception, folder: Path) -> str:
    """``error``'s message with the server's temporary folder taken out of paths."""
    return str(error).replace(f"{folder}/", "").replace(str(folder), ".")


@contextlib.asynccontextmanager
async def received_scan(request, *, max_bytes: int, max_scan_bytes: int,
                        tmp_root: str | None = None) -> AsyncIterator[tuple[MetaImageHeader, Path]]:
    """Stream ``request``'s multipart body to a temporary folder and yield
    (header, folder) of the validated scan; the folder is removed on exit."""
    import asyncio

    content_type, options = parse_options_header(request.headers.get("content-type"))
    if content_type != b"multipart/form-data":
        raise UploadError(415, "expected a multipart/form-data body with the scan's .mhd and .raw "
                               f"(or a .zip), got Content-Type {request.headers.get('content-type')!r}")
    boundary = options.get(b"boundary")
    if not boundary:
        raise UploadError(400, "malformed multipart: Content-Type has no boundary")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise UploadError(413, f"upload of {declared} bytes is over the {max_bytes} byte limit (--max-upload-mb)")

    folder = Path(tempfile.mkdtemp(prefix="torchlite-upload-", dir=tmp_root))
    writer = _PartWriter(folder)
    try:
        try:
            parser = MultipartParser(boundary, writer.callbacks())
        except ValueError as e:
            raise UploadError(400, f"malformed multipart: bad boundary ({e})") from None
        received = 0
        try:
            async for chunk in request.stream():
                received += len(chunk)
                if received > max_bytes:
                    raise UploadError(413, f"upload is over the {max_bytes} byte limit (--max-upload-mb)")
                parser.write(chunk)
            parser.finalize()
        except MultipartParseError as e:
            raise UploadError(400, f"malformed multipart: {e}") from None
        finally:
            writer.close()
        if not writer.finished:
            raise UploadError(400, "malformed multipart: the body ends before the closing boundary")
        files = writer.files
        if any(p.suffix.lower() == ".zip" for p in files):
            if len(files) != 1:
                raise UploadError(400, "send either one .zip or the .mhd and .raw files, not both")
            archive = files[0]
            files = await asyncio.to_thread(_extract_zip, archive, folder, max_scan_bytes)
            archive.unlink()
        header = await asyncio.to_thread(validate_scan, files, folder, max_scan_bytes)
        yield header, folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
