"""One CT series on disk, opened lazily and read without a preprocessing pass.

An uncompressed little-endian MET_SHORT ``.raw`` (what LUNA16 ships) is
memory-mapped read-only and handed to torch without a copy: a crop touches
only the pages it reads, and the OS page cache is the cache. Anything else is
converted once by :mod:`torchlite.data.scan_cache` and then mapped the same
way. Nothing is opened until the voxels are asked for, and a pickled CtScan
carries only its paths, so DataLoader workers each map their own view.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch

from torchlite.data import scan_cache
from torchlite.data.geometry import Geometry
from torchlite.data.metaimage import MetaImageHeader, memmap_volume, read_header


def _crop3d():
    # Imported on first crop only: reading headers, CSVs and voxels needs no
    # compiled operators, so the data layer works (and tests) without them.
    from torchlite.ops.crop import crop3d

    return crop3d


def _readonly_tensor(array: np.ndarray) -> torch.Tensor:
    # torch.from_numpy warns that a non-writable array gives a tensor torch
    # may write to. The mapping is read-only on purpose: the page cache is
    # shared by every worker and must never be dirtied. Copying to silence the
    # warning would defeat zero-copy, so silence exactly that warning; the
    # tensor must be treated as read-only (writing to it faults).
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable", category=UserWarning)
        return torch.from_numpy(array)


class CtScan:
    """A lazily opened .mhd scan: header, geometry, voxels, crops.

    ``cache_dir`` is where converted scans go (default
    :func:`torchlite.data.scan_cache.default_cache_dir`). Errors in the
    header or data raise :class:`~torchlite.data.metaimage.ScanError` on
    first use (or on :meth:`open`), naming the file and the field.
    """

    def __init__(self, path: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None):
        self.path = Path(path)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else scan_cache.default_cache_dir(self.path)
        self._header: MetaImageHeader | None = None
        self._array: np.ndarray | None = None
        self._tensor: torch.Tensor | None = None

    @property
    def series_uid(self) -> str:
        return self.path.stem

    @property
    def header(self) -> MetaImageHeader:
        if self._header is None:
            self._header = read_header(self.path)
        return self._header

    @property
    def geometry(self) -> Geometry:
        return self.header.geometry

    @property
    def shape(self) -> tuple[int, int, int]:
        """(I, R, C)."""
        return self.header.shape

    @property
    def mapped_in_place(self) -> bool:
        """True when the voxels are read straight from the source file."""
        return scan_cache.can_map_in_place(self.header)

    @property
    def array(self) -> np.ndarray:
        """The voxels, int16 HU, (I, R, C), memory-mapped read-only."""
        if self._array is None:
            header = self.header
            if scan_cache.can_map_in_place(header):
                self._array = memmap_volume(header)
            else:
                self._array = scan_cache.cached_volume(header, self.cache_dir)
        return self._array

    @property
    def tensor(self) -> torch.Tensor:
        """:attr:`array` as an int16 CPU tensor sharing its memory. Read-only."""
        if self._tensor is None:
            self._tensor = _readonly_tensor(self.array)
        return self._tensor

    def open(self) -> "CtScan":
        """Read the header and map the voxels now, so errors surface here."""
        _ = self.tensor
        return self

    def close(self) -> None:
        """Drop this object's mapping (tensors handed out keep theirs alive)."""
        self._array = None
        self._tensor = None

    def crop(
        self, centers_irc, size, *, clip=(-1000.0, 1000.0), fill: float = -1000.0, clamp: bool = False
    ) -> torch.Tensor:
        """Patches of ``size`` (d, h, w) around integer IRC centers, float32
        (N, 1, d, h, w), HU clipped to ``clip`` on read (None: no clip); see
        ``torchlite.ops.crop3d`` for ``fill`` and ``clamp``."""
        centers = torch.as_tensor(np.asarray(centers_irc))
        if centers.numel() == 0:
            centers = torch.zeros((0, 3), dtype=torch.int64)
        elif centers.is_floating_point():
            raise TypeError("`centers_irc` must be integer indices (round with Geometry.xyz_to_irc)")
        elif centers.ndim == 1:  # one center
            centers = centers[None]
        centers = centers.to(torch.int64)
        return _crop3d()(
            self.tensor,
            centers,
            [int(s) for s in size],
            fill=fill,
            clamp=clamp,
            clip=None if clip is None else [float(clip[0]), float(clip[1])],
        )

    def __getstate__(self):
        # Workers reopen the scan themselves: never pickle the voxels.
        return {"path": self.path, "cache_dir": self.cache_dir, "_header": self._header}

    def __setstate__(self, state):
        self.__init__(state["path"], cache_dir=state["cache_dir"])
        self._header = state["_header"]

    def __repr__(self) -> str:
        return f"CtScan({str(self.path)!r})"
