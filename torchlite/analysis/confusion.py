"""The book's chapter 14 confusion table of the whole pipeline.

Rows are the truth (non-nodule, benign, malignant), columns what became of
it: *complete miss* (no detection hits the nodule), *filtered out* (hit only
by detections whose nodule probability is below ``threshold``), *predicted
benign* (hit by a detection at or above ``threshold`` whose malignancy is
below ``mal_threshold``, or which has no malignancy: the book's "benign, or
nodule when no malignancy model is used"), *predicted malignant*. A nodule
hit by several detections takes the furthest column any of them reaches (the
book's ``max``).

Where this differs from the book's ``match_and_score``, and why:

- A hit is the LUNA16 rule of :mod:`torchlite.analysis.froc` (within the
  nodule's radius), not the book's ``distance < 0.7 * diameter``, so the table
  and the FROC curve agree on which detections found which nodules.
- The non-nodule row counts the detections that hit no nodule and no excluded
  finding (a detection on an excluded finding is ignored, as in FROC). Its
  complete-miss cell is empty (None, printed "-"): a non-nodule nobody
  detected is not an event one can count (the book leaves it 0).
- Nodules whose malignancy is unknown (no row of
  annotations_with_malignancy.csv within their radius, or no such file) get
  a fourth row instead of being guessed benign.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torchlite.analysis.detections import Detection
from torchlite.analysis.froc import FALSE_POSITIVE, Matching

ROWS = ("non-nodule", "benign", "malignant", "malignancy unknown")
COLUMNS = ("complete miss", "filtered out", "predicted benign", "predicted malignant")
COMPLETE_MISS, FILTERED_OUT, PREDICTED_BENIGN, PREDICTED_MALIGNANT = range(4)


@dataclass(frozen=True)
class ConfusionTable:
    counts: tuple[tuple[int | None, ...], ...]  # [row][column], ROWS x COLUMNS; None where not counted
    threshold: float
    mal_threshold: float

    def cell(self, row: str, column: str) -> int | None:
        return self.counts[ROWS.index(row)][COLUMNS.index(column)]

    def to_json(self) -> dict:
        return {"threshold": self.threshold, "mal_threshold": self.mal_threshold, "rows": list(ROWS),
                "columns": list(COLUMNS), "counts": [list(r) for r in self.counts]}

    def format(self) -> str:
        """The table as text, the book's layout; the unknown-malignancy row only when it is not empty."""
        width = max(len(c) for c in COLUMNS)
        lines = [" " * 18 + " | " + " | ".join(c.rjust(width) for c in COLUMNS)]
        for name, row in zip(ROWS, self.counts):
            if name == ROWS[3] and not any(row):
                continue
            cells = ("-" if v is None else str(v) for v in row)
            lines.append(f"{name:>18} | " + " | ".join(c.rjust(width) for c in cells))
        return "\n".join(lines)


def detection_column(detection: Detection, threshold: float, mal_threshold: float) -> int:
    """FILTERED_OUT, PREDICTED_BENIGN or PREDICTED_MALIGNANT."""
    if detection.probability < threshold:
        return FILTERED_OUT
    if detection.malignancy is None or detection.malignancy < mal_threshold:
        return PREDICTED_BENIGN
    return PREDICTED_MALIGNANT


def confusion_table(matching: Matching, labels: Sequence[bool | None], threshold: float = 0.5,
                    mal_threshold: float = 0.5) -> ConfusionTable:
    """The table of ``matching``; ``labels``: per nodule, malignant or not (None: unknown)."""
    if len(labels) != len(matching.nodules):
        raise ValueError(f"confusion_table: {len(labels)} labels for {len(matching.nodules)} nodules")
    counts = [[0] * len(COLUMNS) for _ in ROWS]
    counts[0][COMPLETE_MISS] = None
    columns = [detection_column(d, threshold, mal_threshold) for d in matching.detections]
    for column, outcome in zip(columns, matching.outcome):
        if outcome == FALSE_POSITIVE:
            counts[0][column] += 1
    for hits, label in zip(matching.hits, labels):
        row = 3 if label is None else 2 if label else 1
        counts[row][max((columns[i] for i in hits), default=COMPLETE_MISS)] += 1
    return ConfusionTable(tuple(tuple(r) for r in counts), threshold, mal_threshold)
