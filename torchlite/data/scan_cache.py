"""A memory-mappable int16 copy of scans that cannot be mapped as they are.

Only an uncompressed little-endian MET_SHORT file is used in place. Any other
scan (another element type, big-endian, zlib-compressed ``.zraw``) is
converted once to an int16 HU ``.npy`` under a cache dir, then memory-mapped
like the others, so every later epoch and every DataLoader worker pays one
page-cache read instead of a decompression.

A cache file is named ``<uid>.<key>.npy`` where the key hashes the path, size
and mtime of the header and of the data file: when the source changes, the key
changes and the cache is rebuilt (and the old file removed). Files are
written through :func:`torchlite.utils.atomic.atomic_write`, so a crash or two
workers building the same scan at once never leave a half-written cache
(both write a complete file; the last rename wins).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sys
from pathlib import Path

import numpy as np

from torchlite.data.metaimage import MetaImageHeader, ScanError, read_volume
from torchlite.utils.atomic import atomic_write

logger = logging.getLogger(__name__)

CACHE_DIR_NAME = ".torchlite_cache"
# Bump when the cache's content changes meaning, so old files are rebuilt.
_FORMAT_VERSION = 1


def default_cache_dir(mhd_path: str | os.PathLike) -> Path:
    """``<root>/.torchlite_cache``, where root is the folder holding the
    ``subset*`` folders (or the .mhd's own folder outside that layout)."""
    parent = Path(mhd_path).absolute().parent
    root = parent.parent if parent.name.startswith("subset") else parent
    return root / CACHE_DIR_NAME


def can_map_in_place(header: MetaImageHeader) -> bool:
    """Whether the voxels are already int16 in this machine's byte order."""
    native_big = sys.byteorder == "big"
    return header.element_type == "MET_SHORT" and not header.compressed and header.big_endian == native_big


def _stamp(path: Path, header: MetaImageHeader) -> str:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ScanError(header.path, "ElementDataFile", f"data file {path} does not exist") from None
    return f"{path.absolute()}:{st.st_size}:{st.st_mtime_ns}"


def cache_key(header: MetaImageHeader) -> str:
    """16 hex digits that change whenever the header or its data file does."""
    text = f"v{_FORMAT_VERSION}|{_stamp(header.path, header)}|{_stamp(header.data_path, header)}"
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def cache_path(header: MetaImageHeader, cache_dir: str | os.PathLike) -> Path:
    return Path(cache_dir) / f"{header.path.stem}.{cache_key(header)}.npy"


def to_int16_hu(volume: np.ndarray, header: MetaImageHeader) -> np.ndarray:
    """Round floats, clip to the int16 range (warning when that loses data)."""
    if volume.dtype == np.int16:
        return volume
    if volume.dtype.kind == "f":
        if not np.all(np.isfinite(volume)):
            raise ScanError(header.data_path, "ElementType", f"{header.element_type} data holds NaN or infinite values")
        volume = np.rint(volume)
        info = np.finfo(volume.dtype)
    else:
        info = np.iinfo(volume.dtype)
    lo, hi = max(-32768, info.min), min(32767, info.max)
    if volume.min() < lo or volume.max() > hi:
        logger.warning(
            "%s: values in [%s, %s] exceed int16; clipped to [%d, %d]",
            header.data_path, volume.min(), volume.max(), lo, hi,
        )
        volume = np.clip(volume, volume.dtype.type(lo), volume.dtype.type(hi))
    return volume.astype(np.int16)


def _load(path: Path, header: MetaImageHeader) -> np.ndarray | None:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        logger.warning("%s: unreadable cache (%s); rebuilding", path, exc)
        return None
    if arr.dtype != np.int16 or arr.shape != header.shape:
        logger.warning("%s: cache holds %s %s, expected int16 %s; rebuilding", path, arr.dtype, arr.shape, header.shape)
        return None
    return arr


def _remove_stale(target: Path, uid: str) -> None:
    pattern = re.compile(re.escape(uid) + r"\.[0-9a-f]{16}\.npy")
    for other in target.parent.iterdir():
        if other != target and pattern.fullmatch(other.name):
            try:
                other.unlink()
            except FileNotFoundError:  # another worker removed it first
                pass
            else:
                logger.info("removed stale cache %s", other)


def cached_volume(header: MetaImageHeader, cache_dir: str | os.PathLike) -> np.ndarray:
    """The scan as a read-only memory-mapped int16 array, building the cache
    file first if it is missing or stale."""
    target = cache_path(header, cache_dir)
    if target.exists() and (arr := _load(target, header)) is not None:
        return arr
    volume = to_int16_hu(read_volume(header), header)
    try:
        with atomic_write(target, "wb") as f:
            np.save(f, np.ascontiguousarray(volume), allow_pickle=False)
    except OSError as exc:
        raise ScanError(target.parent, "cache", f"cannot write the conversion cache: {exc.strerror or exc}") from exc
    logger.info("converted %s (%s) into %s", header.path, header.element_type, target)
    _remove_stale(target, header.path.stem)
    arr = _load(target, header)
    if arr is None:
        raise ScanError(target, "cache", "the cache just written cannot be read back")
    return arr
