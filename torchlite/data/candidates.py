"""The book's candidate list: LUNA16 candidates and annotations unified.

Two styles, as in *Deep Learning with PyTorch* part 2:

- ``classification`` (chapters 11-12): every row of candidates.csv; a
  candidate takes the diameter of the *first* annotation of its series whose
  center is within diameter/4 of it on each axis (inclusive); ``is_nodule`` is
  the candidate's class, ``has_annotation`` whether a diameter was attached.
  Sorted like the book's ``(isNodule, diameter, uid, center)`` tuples, reversed.
- ``malignancy`` (chapters 13-14): positives are the rows of
  annotations_with_malignancy.csv (``is_malignant`` from mal_bool); negatives
  are the class-0 candidates; class-1 candidates are left out because the
  annotations stand for them. Sorted like the book's full tuples, reversed.

Unlike the book, rows that cannot be used are dropped here, not later in a
DataLoader worker, and counted in a :class:`UnifyReport`: series not on disk
(the book skipped those only for candidates, so an annotation of a missing
scan crashed its malignancy training), centers outside the scan, and scans
whose header is unreadable.
"""

from __future__ import annotations

import logging
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, NamedTuple

import numpy as np

from torchlite.data.discovery import discover_scans
from torchlite.data.luna_csv import (
    XYZ,
    AnnotationRow,
    CandidateRow,
    MalignancyRow,
    read_annotations,
    read_candidates,
    read_malignancy_annotations,
)
from torchlite.data.metaimage import ScanError, read_header

logger = logging.getLogger(__name__)

NOT_ON_DISK = "series not on disk"
OUTSIDE_SCAN = "center outside the scan"
BROKEN_HEADER = "scan header unreadable"
STYLES = ("classification", "malignancy")


class CandidateInfo(NamedTuple):
    """One sample: the book's CandidateInfoTuple (chapter 14's fields)."""

    is_nodule: bool
    has_annotation: bool
    is_malignant: bool
    diameter_mm: float
    series_uid: str
    center_xyz: XYZ


@dataclass
class UnifyReport:
    """What became of the input rows."""

    kept: int = 0
    # (source file kind, reason) -> rows dropped
    dropped: Counter = field(default_factory=Counter)
    # classification: annotations no candidate took its diameter from
    unmatched_annotations: int = 0
    # malignancy: class-1 candidates left out because the annotations stand for them
    superseded_candidates: int = 0

    @property
    def total_dropped(self) -> int:
        return sum(self.dropped.values())

    def __str__(self) -> str:
        parts = [f"kept {self.kept}"]
        parts += [f"dropped {n} {src} ({why})" for (src, why), n in sorted(self.dropped.items())]
        if self.unmatched_annotations:
            parts.append(f"{self.unmatched_annotations} annotations matched no candidate")
        if self.superseded_candidates:
            parts.append(f"{self.superseded_candidates} class-1 candidates stood for by annotations")
        return "; ".join(parts)


def attach_diameters(
    candidates: Iterable[CandidateRow], annotations: Iterable[AnnotationRow]
) -> tuple[list[CandidateInfo], int]:
    """The book's chapter 11 matching, unsorted, nothing dropped; also the
    number of annotations that no candidate matched."""
    # (index, x, y, z, tolerance, diameter) per series; inlined for 551k candidates
    by_series: dict[str, list[tuple]] = defaultdict(list)
    for i, a in enumerate(annotations):
        by_series[a.series_uid].append((i, *a.center_xyz, a.diameter_mm / 4, a.diameter_mm))
    used: set[int] = set()
    out = []
    for c in candidates:
        diameter, matched = 0.0, False
        cx, cy, cz = c.center_xyz
        for i, ax, ay, az, tol, d in by_series.get(c.series_uid, ()):
            if abs(cx - ax) <= tol and abs(cy - ay) <= tol and abs(cz - az) <= tol:
                diameter, matched = d, True
                used.add(i)
                break
        out.append(CandidateInfo(c.is_nodule, matched, False, diameter, c.series_uid, c.center_xyz))
    unmatched = sum(1 for rows in by_series.values() for a in rows if a[0] not in used)
    return out, unmatched


def _keep_usable(
    records: list[CandidateInfo],
    source: str,
    series_paths: Mapping[str, os.PathLike] | None,
    check_bounds: bool,
    report: UnifyReport,
) -> list[CandidateInfo]:
    """Drop records whose series is not on disk, whose header is broken, or
    whose center rounds to a voxel outside the scan (vectorized per series)."""
    if series_paths is None:
        return records
    by_series: dict[str, list[CandidateInfo]] = defaultdict(list)
    for r in records:
        if r.series_uid in series_paths:
            by_series[r.series_uid].append(r)
        else:
            report.dropped[(source, NOT_ON_DISK)] += 1
    if not check_bounds:
        return [r for rows in by_series.values() for r in rows]
    kept = []
    for uid, rows in by_series.items():
        try:
            geometry = read_header(series_paths[uid]).geometry
        except ScanError as exc:
            logger.warning("dropping %d %s rows of a broken scan: %s", len(rows), source, exc)
            report.dropped[(source, BROKEN_HEADER)] += len(rows)
            continue
        inside = geometry.contains_irc(geometry.xyz_to_irc(np.array([r.center_xyz for r in rows])))
        report.dropped[(source, OUTSIDE_SCAN)] += int((~inside).sum())
        kept.extend(r for r, ok in zip(rows, inside) if ok)
    return kept


def _finish(records: list[CandidateInfo], report: UnifyReport, style: str) -> tuple[list[CandidateInfo], UnifyReport]:
    # Series uids share a 50-character prefix: comparing ranks instead of the
    # strings gives the same order several times faster.
    rank = {uid: i for i, uid in enumerate(sorted({r.series_uid for r in records}))}
    if style == "classification":
        records.sort(key=lambda r: (r.is_nodule, r.diameter_mm, rank[r.series_uid], r.center_xyz), reverse=True)
    else:
        records.sort(
            key=lambda r: (
                r.is_nodule, r.has_annotation, r.is_malignant, r.diameter_mm, rank[r.series_uid], r.center_xyz
            ),
            reverse=True,
        )
    report.dropped = Counter({k: n for k, n in report.dropped.items() if n})
    report.kept = len(records)
    return records, report


def unify_classification(
    candidates: Iterable[CandidateRow],
    annotations: Iterable[AnnotationRow],
    *,
    series_paths: Mapping[str, os.PathLike] | None = None,
    check_bounds: bool = True,
) -> tuple[list[CandidateInfo], UnifyReport]:
    """Chapters 11-12: candidates with diameters attached. ``series_paths``
    (uid -> .mhd) drops rows of scans not on disk (None: keep all, check
    nothing); ``check_bounds`` also reads each header and drops centers
    outside the scan."""
    report = UnifyReport()
    records, report.unmatched_annotations = attach_diameters(candidates, annotations)
    records = _keep_usable(records, "candidates", series_paths, check_bounds, report)
    return _finish(records, report, "classification")


def unify_malignancy(
    malignancy_annotations: Iterable[MalignancyRow],
    candidates: Iterable[CandidateRow],
    *,
    series_paths: Mapping[str, os.PathLike] | None = None,
    check_bounds: bool = True,
) -> tuple[list[CandidateInfo], UnifyReport]:
    """Chapters 13-14: annotated nodules (benign/malignant) plus class-0
    candidates as non-nodules. Arguments as :func:`unify_classification`."""
    report = UnifyReport()
    positives = [
        CandidateInfo(True, True, a.is_malignant, a.diameter_mm, a.series_uid, a.center_xyz)
        for a in malignancy_annotations
    ]
    negatives = []
    for c in candidates:
        if c.is_nodule:
            report.superseded_candidates += 1
        else:
            negatives.append(CandidateInfo(False, False, False, 0.0, c.series_uid, c.center_xyz))
    records = _keep_usable(positives, "annotations", series_paths, check_bounds, report)
    records += _keep_usable(negatives, "candidates", series_paths, check_bounds, report)
    return _finish(records, report, "malignancy")


def load_candidate_info(
    root: str | os.PathLike,
    *,
    style: str = "classification",
    require_on_disk: bool = True,
    check_bounds: bool = True,
) -> tuple[list[CandidateInfo], UnifyReport]:
    """Read a LUNA16 folder's CSVs and unify them (see the module doc).

    ``require_on_disk=False`` keeps rows of scans that are not downloaded (as
    the book's ``requireOnDisk_bool=False``); bounds are then not checked.
    """
    if style not in STYLES:
        raise ValueError(f"`style` must be one of {STYLES}, got {style!r}")
    root = Path(root)
    series_paths = discover_scans(root) if require_on_disk else None
    candidates = read_candidates(root / "candidates.csv")
    if style == "classification":
        records, report = unify_classification(
            candidates, read_annotations(root / "annotations.csv"),
            series_paths=series_paths, check_bounds=check_bounds,
        )
    else:
        path = root / "annotations_with_malignancy.csv"
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: the malignancy list needs the book's annotations_with_malignancy.csv"
            )
        records, report = unify_malignancy(
            read_malignancy_annotations(path), candidates,
            series_paths=series_paths, check_bounds=check_bounds,
        )
    logger.info("%s candidate list from %s: %s", style, root, report)
    return records, report
