"""Parse LUNA16's CSV files, checking every column and value.

- ``candidates.csv``: seriesuid, coordX, coordY, coordZ, class
- ``annotations.csv``: seriesuid, coordX, coordY, coordZ, diameter_mm
- ``annotations_with_malignancy.csv`` (the book's file): the annotation
  columns plus mal_bool, and optionally mal_details and the bounding box
  (bboxLowX .. bboxHighZ).

Columns are found by name (order and extra columns do not matter). A missing
column raises :class:`LunaCsvError` naming the file and the column; a bad value
names the file, the line and the field. Coordinates are patient XYZ in mm.
Parsed with the ``csv`` module: candidates.csv has 551,065 rows, so rows are
light NamedTuples.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

CANDIDATE_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "class")
ANNOTATION_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "diameter_mm")
MALIGNANCY_COLUMNS = ANNOTATION_COLUMNS + ("mal_bool",)
_BBOX_COLUMNS = ("bboxLowX", "bboxLowY", "bboxLowZ", "bboxHighX", "bboxHighY", "bboxHighZ")

XYZ = tuple[float, float, float]


class LunaCsvError(ValueError):
    """A LUNA16 CSV file is malformed: names the file, line and field."""

    def __init__(self, path: str | os.PathLike, line: int | None, field: str, reason: str):
        self.path, self.line, self.field, self.reason = Path(path), line, field, reason
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        super().__init__(f"{where}: {field}: {reason}")

    def __reduce__(self):
        return (type(self), (self.path, self.line, self.field, self.reason))


class CandidateRow(NamedTuple):
    series_uid: str
    center_xyz: XYZ
    is_nodule: bool  # class == 1


class AnnotationRow(NamedTuple):
    series_uid: str
    center_xyz: XYZ
    diameter_mm: float


class MalignancyRow(NamedTuple):
    series_uid: str
    center_xyz: XYZ
    diameter_mm: float
    is_malignant: bool
    mal_details: tuple[int, ...]  # the radiologists' ratings; () when the column is absent
    bbox_low_xyz: XYZ | None
    bbox_high_xyz: XYZ | None


class _Row:
    """One data row with typed, error-reporting field access."""

    __slots__ = ("path", "line", "values", "index")

    def __init__(self, path: Path, line: int, values: list[str], index: dict[str, int]):
        self.path, self.line, self.values, self.index = path, line, values, index

    def error(self, field: str, reason: str) -> LunaCsvError:
        return LunaCsvError(self.path, self.line, field, reason)

    def text(self, field: str) -> str:
        value = self.values[self.index[field]].strip()
        if not value:
            raise self.error(field, "empty value")
        return value

    def number(self, field: str) -> float:
        text = self.text(field)
        try:
            value = float(text)
        except ValueError:
            raise self.error(field, f"not a number: {text!r}") from None
        if not math.isfinite(value):
            raise self.error(field, f"not a finite number: {text!r}")
        return value

    def xyz(self, x: str = "coordX", y: str = "coordY", z: str = "coordZ") -> XYZ:
        return (self.number(x), self.number(y), self.number(z))

    def flag(self, field: str, true: tuple[str, ...], false: tuple[str, ...]) -> bool:
        text = self.text(field)
        if text in true:
            return True
        if text in false:
            return False
        raise self.error(field, f"expected one of {true + false}, got {text!r}")

    def has(self, field: str) -> bool:
        return field in self.index


def _lines(path: Path, required: tuple[str, ...]) -> Iterator[tuple[dict[str, int], int, list[str]]]:
    """(column index, line number, raw values) of each data row."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise LunaCsvError(path, None, "header", "empty file, expected a header line")
        index: dict[str, int] = {}
        for i, name in enumerate(h.strip() for h in header):
            if name in index:
                raise LunaCsvError(path, 1, name, "column appears twice in the header")
            index[name] = i
        for column in required:
            if column not in index:
                raise LunaCsvError(path, None, column, f"missing column (header has: {', '.join(index)})")
        for values in reader:
            if not values or (len(values) == 1 and not values[0].strip()):
                continue
            if len(values) != len(index):
                raise LunaCsvError(path, reader.line_num, "row", f"expected {len(index)} fields, got {len(values)}")
            yield index, reader.line_num, values


def _read(path, required, parse: Callable[[_Row], tuple]) -> list:
    path = Path(path)
    return [parse(_Row(path, line, values, index)) for index, line, values in _lines(path, required)]


def _candidate(row: _Row) -> CandidateRow:
    return CandidateRow(row.text("seriesuid"), row.xyz(), row.flag("class", ("1",), ("0",)))


def _diameter(row: _Row) -> float:
    diameter = row.number("diameter_mm")
    if diameter < 0:
        raise row.error("diameter_mm", f"negative diameter {diameter}")
    return diameter


def _annotation(row: _Row) -> AnnotationRow:
    return AnnotationRow(row.text("seriesuid"), row.xyz(), _diameter(row))


def _mal_details(row: _Row) -> tuple[int, ...]:
    if not row.has("mal_details"):
        return ()
    text = row.text("mal_details")
    inner = text.strip()
    if not (inner.startswith("[") and inner.endswith("]")):
        raise row.error("mal_details", f"expected a list like '[4, 2, 3]', got {text!r}")
    parts = [p.strip() for p in inner[1:-1].split(",") if p.strip()]
    try:
        ratings = tuple(int(p) for p in parts)
    except ValueError:
        raise row.error("mal_details", f"ratings must be integers, got {text!r}") from None
    if any(r < 1 or r > 5 for r in ratings):
        raise row.error("mal_details", f"ratings must be 1..5 (LIDC), got {text!r}")
    return ratings


def _malignancy(row: _Row) -> MalignancyRow:
    low = high = None
    if all(row.has(c) for c in _BBOX_COLUMNS):
        low = row.xyz(*_BBOX_COLUMNS[:3])
        high = row.xyz(*_BBOX_COLUMNS[3:])
    return MalignancyRow(
        row.text("seriesuid"),
        row.xyz(),
        _diameter(row),
        row.flag("mal_bool", ("True", "true", "1"), ("False", "false", "0")),
        _mal_details(row),
        low,
        high,
    )


def read_candidates(path: str | os.PathLike) -> list[CandidateRow]:
    """Rows of LUNA16's candidates.csv, in file order."""
    # 551,065 rows: convert inline, and take the checked path (which names
    # the bad field) only for a row the fast conversion rejects.
    path = Path(path)
    out = []
    isfinite = math.isfinite
    cols = None
    for index, line, v in _lines(path, CANDIDATE_COLUMNS):
        if cols is None:
            cols = [index[c] for c in CANDIDATE_COLUMNS]
        iu, ix, iy, iz, ic = cols
        try:
            uid, x, y, z, cls = v[iu].strip(), float(v[ix]), float(v[iy]), float(v[iz]), v[ic].strip()
        except ValueError:
            uid = None
        if uid and (cls == "0" or cls == "1") and isfinite(x) and isfinite(y) and isfinite(z):
            out.append(CandidateRow(uid, (x, y, z), cls == "1"))
        else:
            out.append(_candidate(_Row(path, line, v, index)))
    return out


def read_annotations(path: str | os.PathLike) -> list[AnnotationRow]:
    """Rows of LUNA16's annotations.csv, in file order."""
    return _read(path, ANNOTATION_COLUMNS, _annotation)


def read_malignancy_annotations(path: str | os.PathLike) -> list[MalignancyRow]:
    """Rows of the book's annotations_with_malignancy.csv, in file order."""
    return _read(path, MALIGNANCY_COLUMNS, _malignancy)


# --- Appended for torchlite.analysis (evaluation): readers of the other CSVs
# the LUNA16 evaluation uses, with the same error reporting. ---

CsvRow = _Row  # the row type a `read_rows` parser receives: .text, .number, .has, .error


def optional_number(row: _Row, field: str) -> float | None:
    """The finite number in ``field``, or None when the column is absent or the value empty."""
    if not row.has(field) or not row.values[row.index[field]].strip():
        return None
    return row.number(field)


def read_rows(path: str | os.PathLike, required: tuple[str, ...], parse: Callable[[_Row], object]) -> list:
    """``parse(row)`` of each data row of a CSV whose header holds ``required``
    (missing columns, bad values and ragged rows raise :class:`LunaCsvError`)."""
    return _read(path, required, parse)


def _excluded_annotation(row: _Row) -> AnnotationRow:
    # LUNA16's annotations_excluded.csv writes -1 where a finding has no measured diameter.
    return AnnotationRow(row.text("seriesuid"), row.xyz(), row.number("diameter_mm"))


def read_excluded_annotations(path: str | os.PathLike) -> list[AnnotationRow]:
    """Rows of LUNA16's annotations_excluded.csv (findings that are not scored:
    nodules < 3 mm, non-nodules, nodules fewer than 3 of the 4 radiologists
    marked), in file order. Same columns as annotations.csv, but ``diameter_mm``
    may be negative (-1: not measured)."""
    return _read(path, ANNOTATION_COLUMNS, _excluded_annotation)
