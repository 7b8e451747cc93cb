"""The book's candidate/annotation unification on tiny hand-made CSVs."""

import logging
from pathlib import Path

import numpy as np
import pytest
from _ct_files import volume, write_scan

from torchlite.data.candidates import (
    BROKEN_HEADER,
    NOT_ON_DISK,
    OUTSIDE_SCAN,
    CandidateInfo,
    load_candidate_info,
    unify_classification,
    unify_malignancy,
)
from torchlite.data.luna_csv import AnnotationRow, CandidateRow, MalignancyRow, read_malignancy_annotations

LUNA = Path(__file__).resolve().parents[2] / "shared" / "luna"
FLIP_Y = (1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)

CANDIDATES_CSV = """seriesuid,coordX,coordY,coordZ,class
A,1.5,-2.0,0,1
A,4,4,4,1
A,2.0001,0,0,0
A,100,0,0,0
B,0,0,0,1
"""
ANNOTATIONS_CSV = """seriesuid,coordX,coordY,coordZ,diameter_mm
A,0,0,0,8
A,1,1,1,20
A,50,50,50,4
"""
# Worked by hand with the book's rule (|candidate - annotation| <= diameter/4
# on each axis, first annotation of the series wins):
#   A (1.5,-2,0)    vs (0,0,0) d8: 1.5, 2.0 (== 2, inclusive), 0 -> 8 (the d20 one matches too, but is second)
#   A (4,4,4)       vs d8: 4 > 2; vs (1,1,1) d20: 3,3,3 <= 5 -> 20
#   A (2.0001,0,0)  vs d8: 2.0001 > 2; vs d20: 1.0001,1,1 -> 20 (class 0 gets a diameter too, as in the book)
#   A (100,0,0)     -> 0
#   B (0,0,0)       no annotations -> 0
#   A (50,50,50) d4 matches no candidate.
# Book order: sort (isNodule, diameter, uid, center) descending.
EXPECTED_CLASSIFICATION = [
    CandidateInfo(True, True, False, 20.0, "A", (4.0, 4.0, 4.0)),
    CandidateInfo(True, True, False, 8.0, "A", (1.5, -2.0, 0.0)),
    CandidateInfo(True, False, False, 0.0, "B", (0.0, 0.0, 0.0)),
    CandidateInfo(False, True, False, 20.0, "A", (2.0001, 0.0, 0.0)),
    CandidateInfo(False, False, False, 0.0, "A", (100.0, 0.0, 0.0)),
]

MALIGNANCY_CSV = """seriesuid,coordX,coordY,coordZ,diameter_mm,mal_bool
A,0,0,0,8,True
A,1,1,1,20,False
B,3,3,3,5,True
"""
# Positives from the malignancy file; negatives: class-0 candidates; the
# three class-1 candidates are stood for by the annotations. Book order: the
# full tuple (isNodule, hasAnnotation, isMal, diameter, uid, center) descending.
EXPECTED_MALIGNANCY = [
    CandidateInfo(True, True, True, 8.0, "A", (0.0, 0.0, 0.0)),
    CandidateInfo(True, True, True, 5.0, "B", (3.0, 3.0, 3.0)),
    CandidateInfo(True, True, False, 20.0, "A", (1.0, 1.0, 1.0)),
    CandidateInfo(False, False, False, 0.0, "A", (100.0, 0.0, 0.0)),
    CandidateInfo(False, False, False, 0.0, "A", (2.0001, 0.0, 0.0)),
]


def _root(tmp_path, with_b=True, malignancy=True):
    """A LUNA16-shaped folder: scans A (subset0) and B (subset1), the CSVs.

    Scan A covers x, y, z in [-10, 10) mm with flipped y (so the bounds check
    runs through the full direction): (100, 0, 0) lies outside it.
    """
    root = tmp_path / "luna"
    write_scan(root / "subset0" / "A.mhd", volume((20, 10, 10)), spacing=(2.0, 2.0, 1.0),
               origin=(-10.0, 9.0, -10.0), direction=FLIP_Y)
    if with_b:
        write_scan(root / "subset1" / "B.mhd", volume((4, 4, 4)), spacing=(1, 1, 1), origin=(-2, -2, -2))
    (root / "candidates.csv").write_text(CANDIDATES_CSV)
    (root / "annotations.csv").write_text(ANNOTATIONS_CSV)
    if malignancy:
        (root / "annotations_with_malignancy.csv").write_text(MALIGNANCY_CSV)
    return root


def _rows(text, row_type):
    out = []
    for line in text.strip().splitlines()[1:]:
        f = line.split(",")
        xyz = tuple(float(v) for v in f[1:4])
        if row_type is CandidateRow:
            out.append(CandidateRow(f[0], xyz, f[4] == "1"))
        elif row_type is AnnotationRow:
            out.append(AnnotationRow(f[0], xyz, float(f[4])))
        else:
            out.append(MalignancyRow(f[0], xyz, float(f[4]), f[5] == "True", (), None, None))
    return out


def test_classification_unification_by_hand():
    records, report = unify_classification(_rows(CANDIDATES_CSV, CandidateRow), _rows(ANNOTATIONS_CSV, AnnotationRow))
    assert records == EXPECTED_CLASSIFICATION
    assert report.kept == 5 and report.total_dropped == 0
    assert report.unmatched_annotations == 1


def test_malignancy_unification_by_hand():
    records, report = unify_malignancy(_rows(MALIGNANCY_CSV, MalignancyRow), _rows(CANDIDATES_CSV, CandidateRow))
    assert records == EXPECTED_MALIGNANCY
    assert report.superseded_candidates == 3 and report.kept == 5


def test_load_from_a_folder_drops_outside_and_missing(tmp_path):
    root = _root(tmp_path, with_b=False)
    records, report = load_candidate_info(root)
    # B is not on disk; A (100, 0, 0) is outside scan A.
    assert records == [r for r in EXPECTED_CLASSIFICATION if r.series_uid == "A" and r.center_xyz[0] != 100.0]
    assert report.dropped == {("candidates", NOT_ON_DISK): 1, ("candidates", OUTSIDE_SCAN): 1}
    assert report.kept == 3
    assert "dropped 1 candidates (series not on disk)" in str(report)

    records, report = load_candidate_info(root, style="malignancy")
    assert records == [r for r in EXPECTED_MALIGNANCY if r.series_uid == "A" and r.center_xyz[0] != 100.0]
    # B's annotation: the book kept it, and crashed when it opened the scan.
    assert report.dropped == {("annotations", NOT_ON_DISK): 1, ("candidates", OUTSIDE_SCAN): 1}
    assert report.superseded_candidates == 3


def test_without_requiring_disk_everything_is_kept(tmp_path):
    root = _root(tmp_path, with_b=False)
    records, report = load_candidate_info(root, require_on_disk=False)
    assert records == EXPECTED_CLASSIFICATION and report.total_dropped == 0


def test_bounds_check_can_be_turned_off(tmp_path):
    records, report = load_candidate_info(_root(tmp_path), check_bounds=False)
    assert records == EXPECTED_CLASSIFICATION and report.total_dropped == 0


def test_bounds_follow_the_direction_matrix(tmp_path):
    # Scan A's y axis is flipped: y runs from +9 down to -10 mm, x from -10 to +10.
    root = _root(tmp_path)
    (root / "candidates.csv").write_text(
        "seriesuid,coordX,coordY,coordZ,class\n"
        "A,-10.9,9.4,0,0\n"  # x index -0.45 -> 0 in; y index (9-9.4)/2 = -0.2 -> 0 in
        "A,-11.1,0,0,0\n"  # x index -0.55 -> -1: out
        "A,0,9.0001,-10,0\n"  # y index -0.00005 -> 0: in, z index 0: in
        "A,0,-10.1,0,0\n"  # y index 9.55 -> 10 == size: out
        "A,0,0,9.6,0\n"  # z index 19.6 -> 20 == size: out
    )
    records, report = load_candidate_info(root)
    assert sorted(r.center_xyz for r in records) == [(-10.9, 9.4, 0.0), (0.0, 9.0001, -10.0)]
    assert report.dropped == {("candidates", OUTSIDE_SCAN): 3}


def test_broken_header_drops_its_rows_with_a_warning(tmp_path, caplog):
    root = _root(tmp_path)
    (root / "subset1" / "B.mhd").write_text("ObjectType = Image\nNDims = 3\nElementDataFile = B.raw\n")
    with caplog.at_level(logging.WARNING, logger="torchlite.data.candidates"):
        records, report = load_candidate_info(root)
    assert report.dropped[("candidates", BROKEN_HEADER)] == 1
    assert all(r.series_uid == "A" for r in records)
    assert any("B.mhd" in m and "DimSize: missing" in m for m in caplog.messages)


def test_bad_style_and_missing_malignancy_file(tmp_path):
    root = _root(tmp_path, malignancy=False)
    with pytest.raises(ValueError, match="`style` must be one of"):
        load_candidate_info(root, style="segmentation")
    with pytest.raises(FileNotFoundError, match="annotations_with_malignancy.csv"):
        load_candidate_info(root, style="malignancy")


@pytest.mark.skipif(not (LUNA / "annotations_with_malignancy.csv").is_file(), reason="real LUNA16 CSVs not present")
def test_real_malignancy_positives():
    rows = read_malignancy_annotations(LUNA / "annotations_with_malignancy.csv")
    records, report = unify_malignancy(rows, [])
    assert len(records) == report.kept == 1182
    assert sum(r.is_malignant for r in records) == 378
    malignant = [r for r in records if r.is_malignant]
    assert records[: len(malignant)] == malignant  # malignant first, as the book sorts
    diameters = [r.diameter_mm for r in malignant]
    assert diameters == sorted(diameters, reverse=True)
    assert np.isclose(diameters[0], max(r.diameter_mm for r in rows if r.is_malignant))
