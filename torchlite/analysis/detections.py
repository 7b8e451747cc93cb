"""The detections file: what ``torchlite analyze`` writes and ``torchlite evaluate`` reads.

A LUNA16 submission CSV with one more column::

    seriesuid,coordX,coordY,coordZ,probability,malignancy

coordinates in patient millimetres, ``probability`` the nodule probability
(the score the FROC curve sweeps), ``malignancy`` the malignancy probability,
empty when no malignancy model ran. The diameter is not written (LUNA16's
format has no such column). Columns are found by name; ``malignancy`` may be
absent (a plain LUNA16 submission reads as detections without malignancy).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import NamedTuple

from torchlite.data.luna_csv import CsvRow, optional_number, read_rows
from torchlite.utils.atomic import atomic_write

DETECTION_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "probability", "malignancy")
REQUIRED_COLUMNS = DETECTION_COLUMNS[:5]


class Detection(NamedTuple):
    series_uid: str
    xyz: tuple[float, float, float]  # patient millimetres
    probability: float  # nodule probability, in [0, 1]
    malignancy: float | None = None  # malignancy probability; None without a malignancy model
    diameter_mm: float | None = None  # estimated size; not stored in the CSV


def _probability(value: float | None, name: str) -> str:
    if value is None:
        return ""
    value = float(value)
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"write_detections: {name} must be in [0, 1], got {value}")
    return repr(value)  # shortest text that reads back to the same float


def write_detections(path: str | os.PathLike, detections: Iterable[Detection]) -> Path:
    """Write ``detections`` to ``path`` (atomically), in the order given."""
    rows = []
    for d in detections:
        if not d.series_uid or not all(math.isfinite(v) for v in d.xyz):
            raise ValueError(f"write_detections: bad detection {d!r}: needs a series uid and finite coordinates")
        rows.append((d.series_uid, *(repr(float(v)) for v in d.xyz), _probability(d.probability, "probability"),
                     _probability(d.malignancy, "malignancy")))
    with atomic_write(path, "w") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(DETECTION_COLUMNS)
        writer.writerows(rows)
    return Path(path)


def _in_unit_interval(row: CsvRow, field: str, value: float | None) -> float | None:
    if value is not None and not 0.0 <= value <= 1.0:
        raise row.error(field, f"a probability must be in [0, 1], got {value}")
    return value


def read_detections(path: str | os.PathLike, series: Collection[str] | None = None,
                    series_note: str = "the known series") -> list[Detection]:
    """Detections of ``path``, in file order.

    Raises :class:`~torchlite.data.luna_csv.LunaCsvError` naming the file,
    line and field for a missing column, an empty or non-numeric value, NaN or
    infinity, a probability outside [0, 1], and, when ``series`` is given, a
    series uid not in it (the message says it is not one of ``series_note``).
    """

    def parse(row: CsvRow) -> Detection:
        uid = row.text("seriesuid")
        if series is not None and uid not in series:
            raise row.error("seriesuid", f"series {uid} is not one of {series_note}")
        probability = _in_unit_interval(row, "probability", row.number("probability"))
        malignancy = _in_unit_interval(row, "malignancy", optional_number(row, "malignancy"))
        return Detection(uid, row.xyz(), probability, malignancy)

    return read_rows(path, REQUIRED_COLUMNS, parse)
