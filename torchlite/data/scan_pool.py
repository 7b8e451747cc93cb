"""The broken-scan policy datasets use: open scans by series uid, skip bad ones.

A 120 GB download always has a bad file somewhere. A training run must not
die mid-epoch because of it: :meth:`ScanPool.get` returns None for a scan
that cannot be opened, logs one warning naming the file and the reason, and
counts it, so the dataset can draw another sample and report the count.

Only problems of the data on disk are skipped (:class:`ScanError` and
``OSError``); a bug elsewhere still raises, and so does running out of file
descriptors or memory, which would otherwise mark every scan broken. Each process keeps its own pool
state: a pool pickled to DataLoader workers carries only the uid -> path map,
and each worker counts the broken scans it meets.
"""

from __future__ import annotations

import errno
import logging
import os
from collections import OrderedDict
from pathlib import Path
from typing import Mapping

from torchlite.data.metaimage import ScanError
from torchlite.data.scan import CtScan

logger = logging.getLogger(__name__)

# Out of file descriptors or memory: the process is in trouble, not the scan.
_RESOURCE_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM}


def _out_of_resources(exc: BaseException) -> bool:
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in _RESOURCE_ERRNOS:
            return True
        exc = exc.__cause__
    return False


class ScanPool:
    """Lazily opened scans by series uid, at most ``max_open`` kept mapped
    (each mapping holds a file descriptor), broken ones skipped."""

    def __init__(
        self,
        paths: Mapping[str, str | os.PathLike],
        *,
        cache_dir: str | os.PathLike | None = None,
        max_open: int = 64,
    ):
        if max_open < 1:
            raise ValueError(f"`max_open` must be >= 1, got {max_open}")
        self.paths = {uid: Path(p) for uid, p in paths.items()}
        self.cache_dir = cache_dir
        self.max_open = max_open
        self.broken: dict[str, str] = {}  # uid -> why it was skipped
        self._open: OrderedDict[str, CtScan] = OrderedDict()

    @property
    def n_broken(self) -> int:
        return len(self.broken)

    def _skip(self, uid: str, reason: str) -> None:
        self.broken[uid] = reason
        logger.warning("skipping broken scan %s: %s", uid, reason)

    def get(self, series_uid: str) -> CtScan | None:
        """The opened scan, or None (with one warning) if it is broken."""
        scan = self._open.get(series_uid)
        if scan is not None:
            self._open.move_to_end(series_uid)
            return scan
        if series_uid in self.broken:
            return None
        path = self.paths.get(series_uid)
        if path is None:
            self._skip(series_uid, "series not on disk (no .mhd found for it)")
            return None
        try:
            scan = CtScan(path, cache_dir=self.cache_dir).open()
        except (ScanError, OSError) as exc:
            if _out_of_resources(exc):
                raise
            self._skip(series_uid, str(exc) if isinstance(exc, ScanError) else f"{path}: {exc}")
            return None
        self._open[series_uid] = scan
        if len(self._open) > self.max_open:
            _, evicted = self._open.popitem(last=False)
            evicted.close()
        return scan

    def __contains__(self, series_uid: str) -> bool:
        return series_uid in self.paths

    def __getstate__(self):
        return {"paths": self.paths, "cache_dir": self.cache_dir, "max_open": self.max_open}

    def __setstate__(self, state):
        self.__init__(state["paths"], cache_dir=state["cache_dir"], max_open=state["max_open"])
