"""`torchlite evaluate`: the LUNA16 FROC/CPM rules, the malignancy AUC, the
book's confusion table, the detections CSV and the command end to end.

The truths: sensitivities worked out by hand (in the comments), a direct
transcription of the LUNA16 evaluation script's loops (nodule by nodule,
candidates removed as they are matched, ``np.interp`` of the ROC points) on
random data, the rank definition of AUC counted pair by pair.
"""

from __future__ import annotations

import argparse
import json
import random

import numpy as np
import pytest

from torchlite.analysis import evaluate_command
from torchlite.analysis.confusion import confusion_table
from torchlite.analysis.detections import Detection, read_detections, write_detections
from torchlite.analysis.froc import (
    DUPLICATE, EXCLUDED, FALSE_POSITIVE, FP_RATES, TRUE_POSITIVE, froc, malignancy_auc, match_detections,
    nodule_malignancy,
)
from torchlite.data.luna_csv import AnnotationRow, LunaCsvError, MalignancyRow, read_excluded_annotations


def nodule(uid, xyz, diameter):
    return AnnotationRow(uid, tuple(map(float, xyz)), float(diameter))


def det(uid, xyz, probability, malignancy=None):
    return Detection(uid, tuple(map(float, xyz)), probability, malignancy)


def evaluate(detections, nodules, series, excluded=()):
    return froc(match_detections(detections, nodules, series, excluded))


def approx(values):
    return pytest.approx(values, abs=1e-12)


# --- FROC / CPM --------------------------------------------------------------------------------


def test_perfect_predictions_give_cpm_one():
    nodules = [nodule("A", (10, 20, 30), 6), nodule("A", (-40, 0, 5), 12), nodule("B", (0, 0, 0), 4)]
    detections = [det(n.series_uid, n.center_xyz, 1.0) for n in nodules]
    result = evaluate(detections, nodules, ["A", "B", "C"])
    assert result.sensitivities == approx([1.0] * 7)
    assert result.cpm == pytest.approx(1.0)
    assert (result.true_positives, result.false_positives) == (3, 0)

    # False positives below every true positive's probability do not lower any sensitivity:
    # all nodules are found at 0 false positives per scan.
    noise = [det("C", (5.0 * k, 0, 0), 0.1) for k in range(100)]
    assert evaluate(detections + noise, nodules, ["A", "B", "C"]).cpm == pytest.approx(1.0)


def test_only_false_positives_give_cpm_zero():
    nodules = [nodule("A", (0, 0, 0), 10)]
    detections = [det("A", (50, 0, 0), 0.9), det("B", (0, 0, 0), 0.8)]
    result = evaluate(detections, nodules, ["A", "B"])
    assert result.cpm == 0.0
    assert (result.true_positives, result.false_positives) == (0, 2)


def test_hand_computed_case():
    # 3 scans with nodules + 1 without: 4 scans, 3 nodules.
    nodules = [nodule("A", (0, 0, 0), 10), nodule("A", (50, 0, 0), 6), nodule("B", (0, 0, 0), 8)]
    detections = [
        det("A", (1, 0, 0), 0.9),  # hits nodule A1: its best hit -> TP
        det("A", (-1, 0, 0), 0.3),  # hits A1 again: ignored
        det("A", (100, 100, 100), 0.8),  # FP
        det("B", (20, 0, 0), 0.7),  # FP
        det("B", (0, 2, 0), 0.4),  # hits B1 -> TP
        det("C", (0, 0, 0), 0.6),  # FP (C has no nodules)
        det("C", (9, 9, 9), 0.2),  # FP
    ]  # nodule A2 is missed
    # Thresholds down: 0.9 TP, 0.8 FP, 0.7 FP, 0.6 FP, 0.4 TP, 0.2 FP. Curve (FP/scan, sensitivity):
    # (0,0) (0,1/3) (1/4,1/3) (1/2,1/3) (3/4,1/3) (3/4,2/3) (1,2/3).
    # 1/8: between (0,1/3) and (1/4,1/3) -> 1/3;  1/4, 1/2 -> 1/3;  1 -> 2/3;  2, 4, 8: beyond -> 2/3.
    result = evaluate(detections, nodules, ["A", "B", "C", "D"])
    third = 1 / 3
    assert result.curve_fps == approx([0, 0, 0.25, 0.5, 0.75, 0.75, 1.0])
    assert result.curve_sensitivity == approx([0, third, third, third, third, 2 * third, 2 * third])
    assert result.sensitivities == approx([third, third, third, 2 * third, 2 * third, 2 * third, 2 * third])
    assert result.cpm == pytest.approx((3 * third + 4 * 2 * third) / 7)  # 11/21
    assert (result.n_scans, result.n_nodules, result.true_positives, result.false_positives,
            result.ignored_duplicates, result.ignored_excluded) == (4, 3, 2, 4, 1, 0)


def test_tied_probabilities_are_interpolated_as_the_official_script():
    # One scan, two nodules (one missed); a TP and a FP with the same probability make one curve
    # point (1, 1/2) straight from (0, 0): read off the line between them, 1/8 -> 1/16, 1/4 -> 1/8,
    # 1/2 -> 1/4, 1 and beyond -> 1/2.
    nodules = [nodule("A", (0, 0, 0), 10), nodule("A", (40, 0, 0), 10)]
    detections = [det("A", (0, 0, 0), 0.5), det("A", (-30, 0, 0), 0.5)]
    result = evaluate(detections, nodules, ["A"])
    assert result.sensitivities == approx([1 / 16, 1 / 8, 1 / 4, 1 / 2, 1 / 2, 1 / 2, 1 / 2])
    assert result.cpm == pytest.approx((1 / 16 + 1 / 8 + 1 / 4 + 2) / 7)


def test_hit_radius_rule():
    # Nodule of diameter 10 mm: a hit is strictly closer than 5 mm (the official script's
    # squared distance < squared radius); exactly 5 mm away is a miss.
    center, series = (10.5, -20.25, 30.0), ["A"]
    nodules = [nodule("A", center, 10)]

    def outcome(offset):
        xyz = tuple(c + o for c, o in zip(center, offset))
        return match_detections([det("A", xyz, 0.5)], nodules, series).outcome[0]

    assert outcome((4.999, 0, 0)) == TRUE_POSITIVE
    assert outcome((5.001, 0, 0)) == FALSE_POSITIVE
    assert outcome((-5.0, 0, 0)) == FALSE_POSITIVE  # on the sphere
    assert outcome((3, 4, 0)) == FALSE_POSITIVE  # |(3,4,0)| = 5
    assert outcome((3, 3.999, 0)) == TRUE_POSITIVE
    assert outcome((0, 2.9, -4)) == TRUE_POSITIVE  # sqrt(8.41 + 16) < 5
    assert outcome((0, 3.1, -4)) == FALSE_POSITIVE  # sqrt(9.61 + 16) > 5
    # The radius is the nodule's own: 5.001 mm away hits a 10.1 mm nodule.
    wider = [nodule("A", center, 10.1)]
    assert match_detections([det("A", (center[0] + 5.001, center[1], center[2]), 0.5)], wider,
                            series).outcome[0] == TRUE_POSITIVE
    # Another series' nodule is never hit.
    assert match_detections([det("B", center, 0.5)], nodules, ["A", "B"]).outcome[0] == FALSE_POSITIVE


def test_one_true_positive_per_nodule_the_best_hit():
    nodules = [nodule("A", (0, 0, 0), 10)]
    # The second hit (0.8) is ignored, not a FP; the nodule counts with 0.9, above the FP at 0.85.
    detections = [det("A", (1, 0, 0), 0.8), det("A", (0, 1, 0), 0.9), det("A", (30, 0, 0), 0.85)]
    matching = match_detections(detections, nodules, ["A"])
    assert matching.outcome == (DUPLICATE, TRUE_POSITIVE, FALSE_POSITIVE)
    assert matching.best_hit == (1,)
    result = froc(matching)
    assert (result.true_positives, result.false_positives, result.ignored_duplicates) == (1, 1, 1)
    # Found at 0 FP/scan: sensitivity 1 everywhere (with the 0.8 hit it would be 0 below 1 FP/scan).
    assert result.cpm == pytest.approx(1.0)


def test_one_detection_on_two_overlapping_nodules_finds_both():
    nodules = [nodule("A", (0, 0, 0), 10), nodule("A", (4, 0, 0), 10)]
    result = evaluate([det("A", (2, 0, 0), 0.7)], nodules, ["A"])
    assert (result.true_positives, result.false_positives) == (2, 0)
    assert result.cpm == pytest.approx(1.0)


def test_excluded_findings_are_ignored():
    nodules = [nodule("A", (0, 0, 0), 10)]
    excluded = [nodule("A", (40, 0, 0), 4), nodule("A", (-40, 0, 0), -1)]  # -1: unmeasured -> 10 mm
    detections = [
        det("A", (0, 0, 0), 0.5),  # TP
        det("A", (41.9, 0, 0), 0.9),  # within 2 mm of the 4 mm finding: ignored
        det("A", (42.1, 0, 0), 0.8),  # beyond it: FP
        det("A", (-44.9, 0, 0), 0.95),  # within 5 mm of the unmeasured finding: ignored
        det("A", (-45.1, 0, 0), 0.1),  # FP
    ]
    matching = match_detections(detections, nodules, ["A"], excluded)
    assert matching.outcome == (TRUE_POSITIVE, EXCLUDED, FALSE_POSITIVE, EXCLUDED, FALSE_POSITIVE)
    result = froc(matching)
    assert (result.true_positives, result.false_positives, result.ignored_excluded) == (1, 2, 2)
    # Curve: (0,0), 0.8 FP -> (1,0), 0.5 TP -> (1,1), 0.1 FP -> (2,1): 0 below 1 FP/scan, 1 from 1 on.
    assert result.sensitivities == approx([0, 0, 0, 1, 1, 1, 1])
    # Without the exclusions the two ignored detections (0.95, 0.9) are FPs ahead of the TP.
    assert evaluate(detections, nodules, ["A"]).sensitivities == approx([0, 0, 0, 0, 0, 1, 1])
    # A detection hitting a nodule and an excluded finding is the nodule's.
    both = match_detections([det("A", (1, 0, 0), 0.5)], [nodule("A", (0, 0, 0), 10)], ["A"],
                            [nodule("A", (2, 0, 0), 10)])
    assert both.outcome == (TRUE_POSITIVE,)


def test_scans_without_nodules_count_in_the_false_positive_rate():
    nodules = [nodule("A", (0, 0, 0), 10)]
    detections = [det("A", (30, 0, 0), 0.9), det("A", (0, 0, 0), 0.5)]  # a FP above the TP
    # 1 scan: (0,0) (1,0) (1,1): 0 at 1/8, 1/4, 1/2; 1 from 1 FP/scan -> CPM 4/7.
    one = evaluate(detections, nodules, ["A"])
    assert one.sensitivities == approx([0, 0, 0, 1, 1, 1, 1])
    # Plus a scan with no nodules and no detections: (0,0) (1/2,0) (1/2,1) -> 1 from 1/2 -> CPM 5/7.
    two = evaluate(detections, nodules, ["A", "E"])
    assert two.curve_fps == approx([0, 0.5, 0.5])
    assert two.sensitivities == approx([0, 0, 1, 1, 1, 1, 1])
    assert (one.cpm, two.cpm) == (pytest.approx(4 / 7), pytest.approx(5 / 7))


def test_no_nodules_and_stray_series():
    result = evaluate([det("A", (0, 0, 0), 0.5)], [nodule("B", (0, 0, 0), 5)], ["A"])
    assert result.n_nodules == 0 and result.sensitivities is None and result.cpm is None
    with pytest.raises(ValueError, match="not evaluated.*first: B"):
        match_detections([det("B", (0, 0, 0), 0.5)], [], ["A"])
    with pytest.raises(ValueError, match="no series"):
        match_detections([], [], [])


def _official_cpm(detections, nodules, excluded, series):
    """The LUNA16 script's loops, transcribed: nodule by nodule, each candidate within the
    radius (squared distances) removed from the FP pool; missed nodules out of the ROC; ROC
    points at each distinct score; np.interp at the seven rates."""
    gt, probs, total_nodules = [], [], 0
    for uid in series:
        pool = {i: d for i, d in enumerate(detections) if d.series_uid == uid}
        candidates = dict(pool)
        findings = [(n, True) for n in nodules if n.series_uid == uid] + \
                   [(n, False) for n in excluded if n.series_uid == uid]
        for n, included in findings:
            total_nodules += included
            diameter = n.diameter_mm if n.diameter_mm >= 0 else 10.0
            matches = [key for key, d in pool.items()
                       if sum((a - b) ** 2 for a, b in zip(d.xyz, n.center_xyz)) < (diameter / 2) ** 2]
            for key in matches:
                candidates.pop(key, None)
            if included and matches:
                gt.append(1)
                probs.append(max(pool[key].probability for key in matches))
        for d in candidates.values():
            gt.append(0)
            probs.append(d.probability)
    gt, probs = np.array(gt), np.array(probs)
    thresholds = np.sort(np.unique(probs))[::-1]
    fps = [0.0] + [((probs >= t) & (gt == 0)).sum() / len(series) for t in thresholds]
    sens = [0.0] + [((probs >= t) & (gt == 1)).sum() / total_nodules for t in thresholds]
    return float(np.mean(np.interp(FP_RATES, fps, sens)))


def test_matches_the_official_script_on_random_cases():
    rng = random.Random(5)
    for _ in range(40):
        series = [f"S{k}" for k in range(rng.randint(1, 6))]
        nodules = [nodule(rng.choice(series), [rng.uniform(0, 60) for _ in range(3)], rng.uniform(3, 20))
                   for _ in range(rng.randint(1, 8))]
        excluded = [nodule(rng.choice(series), [rng.uniform(0, 60) for _ in range(3)], rng.choice([-1, 4]))
                    for _ in range(rng.randint(0, 3))]
        detections = [det(rng.choice(series), [rng.uniform(0, 60) for _ in range(3)],
                          round(rng.random(), 1)) for _ in range(rng.randint(0, 60))]  # rounded: ties
        # Hits near nodules, so that there are true positives and second hits.
        for n in nodules:
            for _ in range(rng.randint(0, 2)):
                xyz = [c + rng.uniform(-0.3, 0.3) * n.diameter_mm for c in n.center_xyz]
                detections.append(det(n.series_uid, xyz, round(rng.random(), 1)))
        rng.shuffle(detections)
        ours = evaluate(detections, nodules, series, excluded).cpm
        assert ours == pytest.approx(_official_cpm(detections, nodules, excluded, series), abs=1e-12)


# --- malignancy AUC and the confusion table -----------------------------------------------------


def _mal_row(n: AnnotationRow, malignant: bool, shift=(0.0, 0.0, 0.0)) -> MalignancyRow:
    xyz = tuple(c + s for c, s in zip(n.center_xyz, shift))
    return MalignancyRow(n.series_uid, xyz, n.diameter_mm, malignant, (), None, None)


def test_malignancy_labels_by_position():
    a, b, c = nodule("A", (0, 0, 0), 10), nodule("A", (30, 0, 0), 6), nodule("B", (0, 0, 0), 8)
    rows = [_mal_row(a, True, (3, 0, 0)), _mal_row(a, False, (4.5, 0, 0)),  # the nearer one wins
            _mal_row(b, False, (3.5, 0, 0)),  # outside b's 3 mm radius: no label
            _mal_row(nodule("C", (0, 0, 0), 8), True)]  # another series
    assert nodule_malignancy([a, b, c], rows) == [True, None, None]


def test_malignancy_auc_hand_case():
    nodules = [nodule("A", (0, 0, 0), 10), nodule("A", (30, 0, 0), 10), nodule("A", (60, 0, 0), 10),
               nodule("A", (90, 0, 0), 10), nodule("A", (120, 0, 0), 10)]
    labels = [True, True, False, False, True]
    detections = [
        det("A", (0, 0, 0), 0.9, 0.9),
        det("A", (30, 0, 0), 0.8, 0.4),
        det("A", (31, 0, 0), 0.2, 0.99),  # a second hit of nodule 2: its best hit (0.8) carries 0.4
        det("A", (60, 0, 0), 0.7, 0.4),
        det("A", (90, 0, 0), 0.6, 0.1),
        det("A", (200, 0, 0), 0.9, 1.0),  # a false positive: not in the AUC
    ]  # nodule 5 (malignant) is missed: not in the AUC
    # Pairs (malignant, benign): (0.9, 0.4) 1, (0.9, 0.1) 1, (0.4, 0.4) 1/2, (0.4, 0.1) 1 -> 3.5 / 4.
    result = malignancy_auc(match_detections(detections, nodules, ["A"]), labels)
    assert result.auc == pytest.approx(0.875)
    assert (result.n_nodules, result.n_malignant, result.n_benign) == (4, 2, 2)
    # One class only, or no scores: no AUC.
    assert malignancy_auc(match_detections(detections, nodules, ["A"]), [True] * 5).auc is None
    unscored = [d._replace(malignancy=None) for d in detections]
    none = malignancy_auc(match_detections(unscored, nodules, ["A"]), labels)
    assert none.auc is None and none.n_without_score == 4


def test_confusion_table_hand_case():
    nodules = [nodule("A", (0, 0, 0), 10), nodule("A", (30, 0, 0), 10), nodule("A", (60, 0, 0), 10),
               nodule("A", (90, 0, 0), 10), nodule("B", (0, 0, 0), 10), nodule("B", (30, 0, 0), 10)]
    labels = [False, False, True, True, True, None]
    detections = [
        # nodule 1 (benign): hit only below the threshold -> filtered out
        det("A", (0, 0, 0), 0.3, 0.9),
        # nodule 2 (benign): hits 0.6/mal 0.2 and 0.4/mal 0.9 -> predicted benign (the filtered one
        # does not make it malignant)
        det("A", (30, 0, 0), 0.6, 0.2), det("A", (31, 0, 0), 0.4, 0.9),
        # nodule 3 (malignant): hits benign and malignant -> predicted malignant (the furthest column)
        det("A", (60, 0, 0), 0.7, 0.1), det("A", (61, 0, 0), 0.5, 0.5),
        # nodule 4 (malignant): no hit -> complete miss
        # nodule 5 (malignant): hit without malignancy -> predicted benign (the book's "nodule")
        det("B", (0, 0, 0), 0.9, None),
        # nodule 6 (no label): hit, malignant -> the unknown row
        det("B", (30, 0, 0), 0.8, 0.8),
        # non-nodules: filtered out 2, benign 1, malignant 1
        det("A", (200, 0, 0), 0.1, 0.9), det("B", (200, 0, 0), 0.49, 0.1),
        det("B", (300, 0, 0), 0.5, 0.49), det("A", (300, 0, 0), 0.95, 0.5),
    ]
    table = confusion_table(match_detections(detections, nodules, ["A", "B"]), labels, 0.5, 0.5)
    assert table.counts == (
        (None, 2, 1, 1),  # non-nodule
        (0, 1, 1, 0),  # benign
        (1, 0, 1, 1),  # malignant
        (0, 0, 0, 1),  # malignancy unknown
    )
    assert table.cell("malignant", "complete miss") == 1
    text = table.format()
    assert "-" in text.splitlines()[1] and "malignancy unknown" in text
    # Thresholds move detections across columns: at 0.25 nodule 1 is predicted malignant (mal 0.9).
    assert confusion_table(match_detections(detections, nodules, ["A", "B"]), labels, 0.25).cell(
        "benign", "predicted malignant") == 2  # nodules 1 and 2 (its 0.4 hit now counts, mal 0.9)


# --- the detections CSV -----------------------------------------------------------------------------


def test_detections_round_trip(tmp_path):
    detections = [det("1.2.3", (-0.1, 2.5e-7, 123.456789012345), 0.123456789, 0.75),
                  det("1.2.4", (1, 2, 3), 1.0, None)]
    path = write_detections(tmp_path / "d.csv", detections)
    assert path.read_text().splitlines()[0] == "seriesuid,coordX,coordY,coordZ,probability,malignancy"
    assert path.read_text().splitlines()[2].endswith(",1.0,")  # no malignancy: empty
    assert read_detections(path) == detections  # exact floats (diameter is not stored)
    # A plain LUNA16 submission (no malignancy column) reads too.
    (tmp_path / "luna.csv").write_text("probability,seriesuid,coordZ,coordY,coordX\n0.5,1.2.3,3,2,1\n")
    assert read_detections(tmp_path / "luna.csv") == [det("1.2.3", (1, 2, 3), 0.5, None)]
    with pytest.raises(ValueError, match="probability must be in"):
        write_detections(tmp_path / "bad.csv", [det("1.2.3", (0, 0, 0), 1.5)])


@pytest.mark.parametrize("text, line, field, reason", [
    ("seriesuid,coordX,coordY,probability\nA,1,2,0.5\n", None, "coordZ", "missing column"),
    ("seriesuid,coordX,coordY,coordZ,probability\nA,1,2,3,0.5\nA,1,x,3,0.5\n", 3, "coordY", "not a number"),
    ("seriesuid,coordX,coordY,coordZ,probability\nA,1,2,3,nan\n", 2, "probability", "not a finite number"),
    ("seriesuid,coordX,coordY,coordZ,probability\nA,1,2,3,1.5\n", 2, "probability", r"in \[0, 1\]"),
    ("seriesuid,coordX,coordY,coordZ,probability,malignancy\nA,1,2,3,0.5,-0.1\n", 2, "malignancy", r"in \[0, 1\]"),
    ("seriesuid,coordX,coordY,coordZ,probability\nA,1,2,3,0.5\n\nZ,1,2,3,0.5\n", 4, "seriesuid", "Z is not one of"),
])
def test_detection_csv_errors_name_file_line_field(tmp_path, text, line, field, reason):
    path = tmp_path / "pred.csv"
    path.write_text(text)
    with pytest.raises(LunaCsvError, match=reason) as e:
        read_detections(path, series={"A"}, series_note="the evaluated series")
    assert (e.value.path, e.value.line, e.value.field) == (path, line, field)
    assert str(path) in str(e.value)


def test_excluded_annotations_allow_unmeasured_diameters(tmp_path):
    path = tmp_path / "annotations_excluded.csv"
    path.write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\nA,1,2,3,-1\nA,4,5,6,2.5\n")
    assert read_excluded_annotations(path) == [nodule("A", (1, 2, 3), -1), nodule("A", (4, 5, 6), 2.5)]


# --- the command, end to end -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def synth_dataset(tmp_path_factory):
    from torchlite.data.synth import generate_dataset

    root = tmp_path_factory.mktemp("evaluate_synth")
    generate_dataset(root, 4, seed=3, size="small", progress=False)
    return root


def _run(argv) -> int:
    parser = argparse.ArgumentParser()
    evaluate_command.add_arguments(parser)
    return evaluate_command.run(parser.parse_args([str(a) for a in argv]))


def test_command_end_to_end(synth_dataset, tmp_path, capsys, caplog):
    from torchlite.data.luna_csv import read_annotations, read_candidates, read_malignancy_annotations

    annotations = read_annotations(synth_dataset / "annotations.csv")
    malignant = {(r.series_uid, r.center_xyz): r.is_malignant
                 for r in read_malignancy_annotations(synth_dataset / "annotations_with_malignancy.csv")}
    # Every nodule found (malignancy right), every negative candidate a low-probability FP.
    detections = [det(a.series_uid, a.center_xyz, 0.9, 0.8 if malignant[(a.series_uid, a.center_xyz)] else 0.2)
                  for a in annotations]
    negatives = [c for c in read_candidates(synth_dataset / "candidates.csv") if not c.is_nodule]
    detections += [det(c.series_uid, c.center_xyz, 0.3, 0.6) for c in negatives]
    pred = write_detections(tmp_path / "run" / "detections.csv", detections)

    assert _run(["--pred", pred, "--data", synth_dataset, "--all"]) == 0
    report = json.loads((tmp_path / "run" / "evaluation.json").read_text())
    n_scans = len(list(synth_dataset.glob("subset*/*.mhd")))
    assert report["froc"]["cpm"] == pytest.approx(1.0)
    assert report["froc"]["n_scans"] == n_scans == 4
    assert report["froc"]["n_nodules"] == len(annotations)
    assert report["froc"]["false_positives"] == len(negatives)
    n_mal = sum(malignant.values())
    if 0 < n_mal < len(malignant):
        assert report["malignancy"]["auc"] == pytest.approx(1.0)
    counts = report["confusion"]["counts"]
    assert counts[0] == [None, len(negatives), 0, 0]
    assert counts[1][2] == len(annotations) - n_mal and counts[2][3] == n_mal
    assert (tmp_path / "run" / "froc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = capsys.readouterr().out
    assert "CPM" in out and "1.000" in out and "predicted malignant" in out

    # The default, the validation split (the first uid of 4 with --val-stride 10), refuses
    # detections of other scans; --series takes one scan and leaves the others' detections out.
    uids = sorted(p.stem for p in synth_dataset.glob("subset*/*.mhd"))
    assert _run(["--pred", pred, "--data", synth_dataset]) == 2
    assert "is not one of the 1 validation series" in caplog.text
    assert _run(["--pred", pred, "--data", synth_dataset, "--series", uids[1], "--out", tmp_path / "one"]) == 0
    one = json.loads((tmp_path / "one" / "evaluation.json").read_text())
    assert one["series"] == [uids[1]] and one["froc"]["n_scans"] == 1
    assert one["froc"]["n_nodules"] == sum(a.series_uid == uids[1] for a in annotations)


def test_command_bad_input_exits_2(synth_dataset, tmp_path, caplog):
    good = write_detections(tmp_path / "d.csv", [])
    unknown = write_detections(tmp_path / "u.csv", [det("9.9.9", (0, 0, 0), 0.5)])
    for argv in (["--pred", tmp_path / "missing.csv", "--data", synth_dataset],
                 ["--pred", good, "--data", tmp_path / "nowhere"],
                 ["--pred", good, "--data", synth_dataset, "--series", "9.9.9"],
                 ["--pred", good, "--data", synth_dataset, "--threshold", "1.5"],
                 ["--pred", unknown, "--data", synth_dataset, "--all"]):
        assert _run(argv) == 2, argv
    err = caplog.text
    assert "missing.csv: no such file" in err and "no scan 9.9.9.mhd" in err
    assert f"{tmp_path / 'u.csv'}:2: seriesuid: series 9.9.9 is not one of the 4 scans" in err
    # An empty detections file is valid input: every nodule missed, CPM 0.
    assert _run(["--pred", good, "--data", synth_dataset, "--all"]) == 0
    assert json.loads((tmp_path / "evaluation.json").read_text())["froc"]["cpm"] == 0.0
