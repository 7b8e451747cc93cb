"""What the datasets read from: a LUNA16 folder, and its candidates as arrays.

:class:`LunaSource` reads a folder once (scans on disk, the unified candidate
lists) and can be handed to all three datasets, which then split the same
series universe the same way. :class:`CandidateTable` is the part of a
candidate list a dataset keeps, and pickles to its DataLoader workers.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from torchlite.data.candidates import CandidateInfo, UnifyReport, load_candidate_info, unify_malignancy
from torchlite.data.datasets.split import SeriesSplit, split_series
from torchlite.data.discovery import discover_scans
from torchlite.data.luna_csv import MalignancyRow, read_annotations, read_candidates
from torchlite.data.metaimage import ScanError, read_header

logger = logging.getLogger(__name__)

MALIGNANCY_CSV = "annotations_with_malignancy.csv"
# "segmentation": the malignancy-style list (annotated nodules + class-0
# candidates), from annotations.csv when the book's malignancy file is absent.
LIST_STYLES = ("classification", "malignancy", "segmentation")


@dataclass(frozen=True, eq=False)
class CandidateTable:
    """Candidate rows as arrays, centers already in IRC.

    The book keeps a list of namedtuples and converts XYZ -> IRC in every
    ``__getitem__``. 551,065 such tuples pickle to tens of MB and are
    unpickled by every worker; these arrays (int32 series index, int32 IRC
    center, flags) take ~17 bytes a row and pickle as a few buffer copies.
    """

    uids: tuple[str, ...]  # series uid of each series index
    series: np.ndarray  # (N,) int32, index into uids
    center_irc: np.ndarray  # (N, 3) int32, (index, row, column)
    is_nodule: np.ndarray  # (N,) bool
    is_malignant: np.ndarray  # (N,) bool
    diameter_mm: np.ndarray  # (N,) float32

    def __len__(self) -> int:
        return len(self.series)

    def uid(self, row: int) -> str:
        return self.uids[self.series[row]]

    def rows(self, mask: np.ndarray | None = None) -> np.ndarray:
        """Row numbers (int64) where ``mask`` holds, in table order (all rows for None)."""
        return np.arange(len(self)) if mask is None else np.flatnonzero(mask)

    @classmethod
    def build(cls, records: Sequence[CandidateInfo], series_paths: Mapping[str, os.PathLike]) -> "CandidateTable":
        """The rows of ``records`` whose series is in ``series_paths``, in
        record order. Each series' header is read once for the XYZ -> IRC
        conversion; rows of a broken header or outside their scan are dropped
        with a warning (load_candidate_info drops them already, so this only
        fires when the folder changed in between)."""
        uids = tuple(sorted(series_paths))
        series_index = {uid: i for i, uid in enumerate(uids)}
        by_series: dict[str, list[int]] = defaultdict(list)
        for i, r in enumerate(records):
            if r.series_uid in series_index:
                by_series[r.series_uid].append(i)
        irc = np.zeros((len(records), 3), dtype=np.int64)
        keep = np.zeros(len(records), dtype=bool)
        for uid, idx in by_series.items():
            try:
                geometry = read_header(series_paths[uid]).geometry
            except ScanError as exc:
                logger.warning("dropping %d candidates of a broken scan: %s", len(idx), exc)
                continue
            centers = geometry.xyz_to_irc(np.array([records[i].center_xyz for i in idx], dtype=np.float64))
            inside = geometry.contains_irc(centers)
            if not inside.all():
                logger.warning("dropping %d candidates outside scan %s", int((~inside).sum()), uid)
            irc[idx] = centers
            keep[idx] = inside
        rows = np.flatnonzero(keep)
        return cls(
            uids=uids,
            series=np.array([series_index[records[i].series_uid] for i in rows], dtype=np.int32),
            center_irc=irc[rows].astype(np.int32),
            is_nodule=np.array([records[i].is_nodule for i in rows], dtype=bool),
            is_malignant=np.array([records[i].is_malignant for i in rows], dtype=bool),
            diameter_mm=np.array([records[i].diameter_mm for i in rows], dtype=np.float32),
        )


class LunaSource:
    """A LUNA16 folder (``<root>/subset*/<uid>.mhd`` and the CSVs), read once.

    ``series_paths`` are the scans on disk: the universe every dataset
    splits (:meth:`split`), whatever its candidate list covers. Candidate
    lists are unified on first use (``load_candidate_info``, which drops
    unusable rows and reports them) and kept. ``cache_dir`` is where scans
    that cannot be memory-mapped in place are converted (None: under root).
    """

    def __init__(self, root: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None):
        self.root = Path(root)
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.series_paths: dict[str, Path] = discover_scans(self.root)
        self._lists: dict[str, list[CandidateInfo]] = {}
        self.reports: dict[str, UnifyReport] = {}

    def split(self, val_stride: int = 10) -> SeriesSplit:
        return split_series(self.series_paths, val_stride)

    def half_paths(self, val: bool, val_stride: int) -> dict[str, Path]:
        """uid -> .mhd of one half of the split (ValueError if it is empty)."""
        if val and val_stride == 0:
            raise ValueError("a validation set needs `val_stride` > 0 (val_stride=0 puts every series in training)")
        uids = self.split(val_stride).half(val)
        if not uids:
            which = "validation" if val else "training"
            raise ValueError(
                f"no {which} series: {len(self.series_paths)} scans under {self.root} with val_stride={val_stride}"
            )
        return {uid: self.series_paths[uid] for uid in uids}

    def candidate_list(self, style: str) -> list[CandidateInfo]:
        """The unified list of one style (see :data:`LIST_STYLES`)."""
        if style not in LIST_STYLES:
            raise ValueError(f"`style` must be one of {LIST_STYLES}, got {style!r}")
        if style not in self._lists:
            if style == "segmentation" and not (self.root / MALIGNANCY_CSV).is_file():
                records, report = self._annotation_list()
            else:
                base = "malignancy" if style == "segmentation" else style
                records, report = load_candidate_info(self.root, style=base)
            self._lists[style], self.reports[style] = records, report
        return self._lists[style]

    def _annotation_list(self) -> tuple[list[CandidateInfo], UnifyReport]:
        # Segmentation needs nodule centers, not malignancy: annotations.csv
        # rows stand in for the book's file (malignancy unknown, so False).
        nodules = [
            MalignancyRow(a.series_uid, a.center_xyz, a.diameter_mm, False, (), None, None)
            for a in read_annotations(self.root / "annotations.csv")
        ]
        candidates = read_candidates(self.root / "candidates.csv")
        records, report = unify_malignancy(nodules, candidates, series_paths=self.series_paths)
        logger.info("segmentation list from annotations.csv (no %s): %s", MALIGNANCY_CSV, report)
        return records, report

    def table(self, style: str, val: bool, val_stride: int) -> tuple[CandidateTable, dict[str, Path]]:
        """One half's candidates as a table, and that half's scan paths."""
        paths = self.half_paths(val, val_stride)
        return CandidateTable.build(self.candidate_list(style), paths), paths

    def __repr__(self) -> str:
        return f"LunaSource({str(self.root)!r}, {len(self.series_paths)} scans)"


def as_source(source: "LunaSource | str | os.PathLike", cache_dir: str | os.PathLike | None = None) -> LunaSource:
    """A LunaSource as given, or one read from a folder."""
    if isinstance(source, LunaSource):
        if cache_dir is not None and Path(cache_dir) != source.cache_dir:
            raise ValueError("pass `cache_dir` to the LunaSource, not to the dataset built from it")
        return source
    return LunaSource(source, cache_dir=cache_dir)
