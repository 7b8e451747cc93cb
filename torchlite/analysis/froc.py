"""FROC and CPM by the LUNA16 rules, and the malignancy AUC of detected nodules.

The rules are those of LUNA16's evaluation script (noduleCADEvaluationLUNA16.py;
Setio et al., Medical Image Analysis 42, 2017):

- A detection *hits* a nodule when its distance to the nodule's center is
  less than the nodule's radius (``distance < diameter / 2``, strictly, as the
  script compares squared distance < squared radius): a detection exactly on
  the sphere is a miss.
- Each nodule counts once, with the probability of its highest-probability
  hit; its other hits are neither true nor false positives (ignored). A
  detection that hits two nodules serves both (the script does the same).
- A detection that hits no nodule but hits an *excluded* finding
  (annotations_excluded.csv: nodules < 3 mm, non-nodules, nodules fewer than
  three radiologists marked) is ignored. An excluded finding with a negative
  diameter (-1: not measured) is given 10 mm, as the script does.
- Every other detection is a false positive. The false-positive rate divides
  by the number of evaluated scans, those without nodules or without
  detections included.
- The curve: for each distinct detection probability t, from the highest down,
  (false positives with probability >= t per scan, nodules whose best hit has
  probability >= t / all nodules), starting from (0, 0). Nodules no detection
  hits never count as found, so the curve ends below 1 when some are missed.
- The sensitivity at a false-positive rate r is read off that curve by linear
  interpolation between its points (the script's ``np.interp`` of the ROC
  points): where the curve rises vertically at r, its top; beyond the curve's
  last point, the last (= the highest) sensitivity reached. CPM is the mean of
  the sensitivities at 1/8, 1/4, 1/2, 1, 2, 4 and 8 false positives per scan.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from torchlite.analysis.detections import Detection
from torchlite.data.luna_csv import AnnotationRow, MalignancyRow

FP_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
UNMEASURED_EXCLUDED_DIAMETER_MM = 10.0  # the script's size for an excluded finding of diameter -1

# What became of each detection.
TRUE_POSITIVE = "true_positive"  # the best hit of at least one nodule
DUPLICATE = "duplicate"  # hits a nodule that a higher-probability detection also hits: ignored
EXCLUDED = "excluded"  # hits only excluded findings: ignored
FALSE_POSITIVE = "false_positive"


@dataclass(frozen=True)
class Matching:
    """Detections against the nodules of the evaluated series."""

    series: tuple[str, ...]  # the evaluated scans (the FP rate's denominator)
    detections: tuple[Detection, ...]
    nodules: tuple[AnnotationRow, ...]  # annotations.csv rows of the evaluated series
    hits: tuple[tuple[int, ...], ...]  # per nodule: indexes into detections of its hits
    best_hit: tuple[int | None, ...]  # per nodule: its highest-probability hit, None if missed
    outcome: tuple[str, ...]  # per detection: TRUE_POSITIVE, DUPLICATE, EXCLUDED or FALSE_POSITIVE


def _hit_matrix(points: np.ndarray, centers: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """(points, centers) bool: point strictly inside each center's sphere."""
    if len(points) == 0 or len(centers) == 0:
        return np.zeros((len(points), len(centers)), dtype=bool)
    squared = ((points[:, None, :] - centers[None, :, :]) ** 2).sum(-1)
    return squared < radii[None, :] ** 2


def _by_series(rows: Iterable, series: set[str]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        if row.series_uid in series:
            out[row.series_uid].append(i)
    return out


def match_detections(detections: Sequence[Detection], annotations: Iterable[AnnotationRow],
                     series: Iterable[str], excluded: Iterable[AnnotationRow] = ()) -> Matching:
    """Match ``detections`` to the ``annotations`` of ``series`` by the rules
    above. Annotations of other series are left out; a detection of a series
    not in ``series`` is a ValueError (it could count nowhere: not as a false
    positive of an unevaluated scan, and silently dropping it would hide a
    mix-up of files)."""
    series = tuple(dict.fromkeys(series))
    if not series:
        raise ValueError("no series to evaluate")
    wanted = set(series)
    detections = tuple(detections)
    stray = [d.series_uid for d in detections if d.series_uid not in wanted]
    if stray:
        raise ValueError(f"{len(stray)} detections are for series not evaluated (first: {stray[0]})")
    nodules = tuple(a for a in annotations if a.series_uid in wanted)
    excluded = tuple(e for e in excluded if e.series_uid in wanted)

    hits: list[list[int]] = [[] for _ in nodules]
    outcome = [FALSE_POSITIVE] * len(detections)
    det_by_series = _by_series(detections, wanted)
    nod_by_series = _by_series(nodules, wanted)
    exc_by_series = _by_series(excluded, wanted)
    for uid, det_idx in det_by_series.items():
        points = np.array([detections[i].xyz for i in det_idx], dtype=np.float64).reshape(-1, 3)
        nod_idx = nod_by_series.get(uid, [])
        nod_hit = _hit_matrix(points, np.array([nodules[j].center_xyz for j in nod_idx]).reshape(-1, 3),
                              np.array([nodules[j].diameter_mm / 2.0 for j in nod_idx]))
        exc_idx = exc_by_series.get(uid, [])
        exc_radii = np.array([(e.diameter_mm if e.diameter_mm >= 0 else UNMEASURED_EXCLUDED_DIAMETER_MM) / 2.0
                              for e in (excluded[k] for k in exc_idx)])
        exc_hit = _hit_matrix(points, np.array([excluded[k].center_xyz for k in exc_idx]).reshape(-1, 3), exc_radii)
        for row, i in enumerate(det_idx):
            for col in np.flatnonzero(nod_hit[row]):
                hits[nod_idx[col]].append(i)
            if nod_hit[row].any():
                outcome[i] = DUPLICATE  # until it turns out to be some nodule's best hit
            elif exc_hit[row].any():
                outcome[i] = EXCLUDED

    best_hit: list[int | None] = []
    for nodule_hits in hits:
        # highest probability; among equals the first in file order (max keeps the first)
        best = max(nodule_hits, key=lambda i: detections[i].probability, default=None)
        best_hit.append(best)
        if best is not None:
            outcome[best] = TRUE_POSITIVE
    return Matching(series, detections, nodules, tuple(tuple(h) for h in hits), tuple(best_hit), tuple(outcome))


@dataclass(frozen=True)
class FrocResult:
    fp_rates: tuple[float, ...]  # FP_RATES
    sensitivities: tuple[float, ...] | None  # at each rate; None when there are no nodules
    cpm: float | None  # mean of the sensitivities
    curve_fps: tuple[float, ...]  # false positives per scan of each curve point, from (0, 0)
    curve_sensitivity: tuple[float, ...]
    curve_threshold: tuple[float | None, ...]  # the probability threshold of each point (None: the origin)
    n_scans: int
    n_nodules: int
    n_detections: int
    true_positives: int  # nodules hit by some detection (each once)
    false_positives: int
    ignored_duplicates: int
    ignored_excluded: int

    @property
    def max_sensitivity(self) -> float | None:
        return self.curve_sensitivity[-1] if self.n_nodules else None

    def sensitivity_at(self, fp_rate: float) -> float | None:
        if not self.n_nodules:
            return None
        return interpolate_curve(self.curve_fps, self.curve_sensitivity, fp_rate)

    def to_json(self) -> dict:
        return {
            "fp_rates": list(self.fp_rates),
            "sensitivities": None if self.sensitivities is None else list(self.sensitivities),
            "cpm": self.cpm,
            "max_sensitivity": self.max_sensitivity,
            "n_scans": self.n_scans, "n_nodules": self.n_nodules, "n_detections": self.n_detections,
            "true_positives": self.true_positives, "false_positives": self.false_positives,
            "ignored_duplicates": self.ignored_duplicates, "ignored_excluded": self.ignored_excluded,
            "curve": {"fps_per_scan": list(self.curve_fps), "sensitivity": list(self.curve_sensitivity),
                      "threshold": list(self.curve_threshold)},
        }


def interpolate_curve(xs: Sequence[float], ys: Sequence[float], x: float) -> float:
    """The piecewise-linear curve through (xs, ys) (xs non-decreasing) at ``x``;
    at a vertical step, its top; left of xs[0], ys[0]; right of xs[-1], ys[-1]."""
    j = bisect_right(xs, x) - 1  # the last point with xs[j] <= x
    if j < 0:
        return ys[0]
    if j == len(xs) - 1:
        return ys[-1]
    return ys[j] + (ys[j + 1] - ys[j]) * (x - xs[j]) / (xs[j + 1] - xs[j])


def froc(matching: Matching, fp_rates: Sequence[float] = FP_RATES) -> FrocResult:
    """The FROC curve, the sensitivities at ``fp_rates`` and their mean (CPM)."""
    n_scans, n_nodules = len(matching.series), len(matching.nodules)
    fp_scores = [d.probability for d, o in zip(matching.detections, matching.outcome) if o == FALSE_POSITIVE]
    tp_scores = [matching.detections[b].probability for b in matching.best_hit if b is not None]
    # Sweep the thresholds from the highest probability down, one curve point per distinct value.
    events = sorted([(p, 0) for p in fp_scores] + [(p, 1) for p in tp_scores], key=lambda e: -e[0])
    xs, ys, ts = [0.0], [0.0], [None]
    fps = tps = 0
    for k, (p, is_tp) in enumerate(events):
        fps += not is_tp
        tps += is_tp
        if k + 1 == len(events) or events[k + 1][0] != p:
            xs.append(fps / n_scans)
            ys.append(tps / n_nodules if n_nodules else 0.0)
            ts.append(p)
    if n_nodules:
        sensitivities = tuple(interpolate_curve(xs, ys, r) for r in fp_rates)
        cpm = sum(sensitivities) / len(sensitivities)
    else:
        sensitivities = cpm = None
    return FrocResult(
        fp_rates=tuple(fp_rates), sensitivities=sensitivities, cpm=cpm,
        curve_fps=tuple(xs), curve_sensitivity=tuple(ys), curve_threshold=tuple(ts),
        n_scans=n_scans, n_nodules=n_nodules, n_detections=len(matching.detections),
        true_positives=len(tp_scores), false_positives=len(fp_scores),
        ignored_duplicates=matching.outcome.count(DUPLICATE), ignored_excluded=matching.outcome.count(EXCLUDED),
    )


def nodule_malignancy(nodules: Sequence[AnnotationRow], rows: Iterable[MalignancyRow]) -> list[bool | None]:
    """Per nodule, ``mal_bool`` of the malignancy annotation of its series
    nearest its center and within its radius (``<=``: the two files may give
    the same point for a nodule of any size); None when there is none (the
    book's file and annotations.csv were compiled separately and do not list
    exactly the same nodules)."""
    by_series: dict[str, list[MalignancyRow]] = defaultdict(list)
    for row in rows:
        by_series[row.series_uid].append(row)
    labels: list[bool | None] = []
    for nodule in nodules:
        best, best_distance = None, math.inf
        for row in by_series.get(nodule.series_uid, ()):
            distance = math.dist(row.center_xyz, nodule.center_xyz)
            if distance <= nodule.diameter_mm / 2.0 and distance < best_distance:
                best, best_distance = row, distance
        labels.append(None if best is None else best.is_malignant)
    return labels


@dataclass(frozen=True)
class MalignancyAuc:
    auc: float | None  # None when a class is missing
    n_nodules: int  # detected nodules with both a label and a malignancy score
    n_malignant: int
    n_benign: int
    n_without_score: int  # detected nodules whose best hit carries no malignancy
    n_without_label: int  # detected nodules with no malignancy annotation

    def to_json(self) -> dict:
        return dict(self.__dict__)


def malignancy_auc(matching: Matching, labels: Sequence[bool | None]) -> MalignancyAuc:
    """ROC AUC of the malignancy of each detected nodule's best hit against
    the nodule's label (``labels``, one per ``matching.nodules``): the rank
    formula, ties counting one half (torchlite.train.metrics.roc_auc)."""
    import torch

    from torchlite.train.metrics import roc_auc

    if len(labels) != len(matching.nodules):
        raise ValueError(f"malignancy_auc: {len(labels)} labels for {len(matching.nodules)} nodules")
    scores, truth = [], []
    without_score = without_label = 0
    for best, label in zip(matching.best_hit, labels):
        if best is None:
            continue
        malignancy = matching.detections[best].malignancy
        if label is None:
            without_label += 1
        elif malignancy is None:
            without_score += 1
        else:
            scores.append(malignancy)
            truth.append(label)
    n_malignant = sum(truth)
    auc = None
    if 0 < n_malignant < len(truth):
        auc = roc_auc(torch.tensor(truth), torch.tensor(scores, dtype=torch.float64))
    return MalignancyAuc(auc, len(truth), n_malignant, len(truth) - n_malignant, without_score, without_label)
