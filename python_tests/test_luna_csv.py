"""LUNA16 CSV parsing: the real annotation files, and every kind of bad file."""

import csv
from pathlib import Path

import pytest

from torchlite.data.luna_csv import (
    LunaCsvError,
    read_annotations,
    read_candidates,
    read_malignancy_annotations,
)

# The real LUNA16 annotation files live beside the checkout (../shared/luna).
LUNA = Path(__file__).resolve().parents[2] / "shared" / "luna"
needs_real = pytest.mark.skipif(not (LUNA / "annotations.csv").is_file(), reason="real LUNA16 CSVs not present")


def _dict_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@needs_real
def test_real_annotations():
    rows = read_annotations(LUNA / "annotations.csv")
    assert len(rows) == 1186  # the README's count
    assert len({r.series_uid for r in rows}) == 601
    first = rows[0]
    assert first.series_uid == "1.3.6.1.4.1.14519.5.2.1.6279.6001.100225287222365663678666836860"
    assert first.center_xyz == (-128.6994211, -175.3192718, -298.3875064)
    assert first.diameter_mm == 5.651470635
    assert all(3.0 < r.diameter_mm < 33.0 for r in rows)


@needs_real
def test_real_malignancy_annotations_agree_with_annotations():
    rows = read_malignancy_annotations(LUNA / "annotations_with_malignancy.csv")
    raw = _dict_rows(LUNA / "annotations_with_malignancy.csv")
    assert len(rows) == len(raw) == 1182  # 4 fewer than annotations.csv, over 600 series
    assert len({r.series_uid for r in rows}) == 600
    assert sum(r.is_malignant for r in rows) == sum(r["mal_bool"] == "True" for r in raw) == 378
    # the file's own len_mal_details column is an independent check of mal_details
    assert [len(r.mal_details) for r in rows] == [int(r["len_mal_details"]) for r in raw]
    assert all(1 <= v <= 5 for r in rows for v in r.mal_details)
    # boxes as written (not low <= high: on flipped scans the book's "low" corner is the high one)
    for r, text in zip(rows, raw):
        assert r.bbox_low_xyz == tuple(float(text[f"bboxLow{a}"]) for a in "XYZ")
        assert r.bbox_high_xyz == tuple(float(text[f"bboxHigh{a}"]) for a in "XYZ")
    # the same nodules as annotations.csv (positions to 1e-6 mm)
    plain = {}
    for a in read_annotations(LUNA / "annotations.csv"):
        plain.setdefault(a.series_uid, []).append(a)
    for r in rows:
        assert any(
            max(abs(p - q) for p, q in zip(a.center_xyz + (a.diameter_mm,), r.center_xyz + (r.diameter_mm,))) < 1e-6
            for a in plain[r.series_uid]
        )


def _write(tmp_path, text, name="file.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_candidates_small_file(tmp_path):
    path = _write(tmp_path, "seriesuid,coordX,coordY,coordZ,class\n1.2.3,-1.5,2,3e1,1\n\n1.2.4,0,0,0,0\n")
    rows = read_candidates(path)
    assert [(r.series_uid, r.center_xyz, r.is_nodule) for r in rows] == [
        ("1.2.3", (-1.5, 2.0, 30.0), True),
        ("1.2.4", (0.0, 0.0, 0.0), False),
    ]


def test_columns_found_by_name_extra_columns_and_bom(tmp_path):
    path = tmp_path / "c.csv"
    path.write_bytes("\ufeffclass,extra,coordZ,coordY,coordX,seriesuid\r\n0,x,3,2,1,u\r\n".encode())
    (row,) = read_candidates(path)
    assert row.center_xyz == (1.0, 2.0, 3.0) and row.series_uid == "u" and not row.is_nodule


def test_malignancy_without_optional_columns(tmp_path):
    path = _write(tmp_path, "seriesuid,coordX,coordY,coordZ,diameter_mm,mal_bool\nu,1,2,3,4.5,False\n")
    (row,) = read_malignancy_annotations(path)
    assert (row.is_malignant, row.mal_details, row.bbox_low_xyz) == (False, (), None)


@pytest.mark.parametrize(
    "reader, header, missing",
    [
        (read_candidates, "seriesuid,coordX,coordY,coordZ", "class"),
        (read_annotations, "seriesuid,coordX,coordY,coordZ", "diameter_mm"),
        (read_annotations, "coordX,coordY,coordZ,diameter_mm", "seriesuid"),
        (read_malignancy_annotations, "seriesuid,coordX,coordY,coordZ,diameter_mm", "mal_bool"),
    ],
)
def test_missing_column_names_file_and_column(tmp_path, reader, header, missing):
    path = _write(tmp_path, header + "\n")
    with pytest.raises(LunaCsvError, match=rf"file\.csv: {missing}: missing column") as info:
        reader(path)
    assert str(path) in str(info.value) and info.value.field == missing


@needs_real
def test_real_file_with_a_column_removed(tmp_path):
    lines = (LUNA / "annotations.csv").read_text().splitlines()
    cut = [",".join(line.split(",")[:4]) for line in lines]
    path = _write(tmp_path, "\n".join(cut) + "\n", "annotations.csv")
    with pytest.raises(LunaCsvError, match=r"annotations\.csv: diameter_mm: missing column"):
        read_annotations(path)


@needs_real
def test_real_file_with_a_bad_number_names_line_and_field(tmp_path):
    lines = (LUNA / "annotations.csv").read_text().splitlines()
    fields = lines[2].split(",")
    fields[1] = "12,5".replace(",", ";")  # a European decimal, a classic
    lines[2] = ",".join(fields)
    path = _write(tmp_path, "\n".join(lines) + "\n", "annotations.csv")
    with pytest.raises(LunaCsvError, match=r"annotations\.csv:3: coordX: not a number: '12;5'") as info:
        read_annotations(path)
    assert info.value.line == 3


BAD_ROWS = [
    (read_candidates, "seriesuid,coordX,coordY,coordZ,class\nu,1,2,3,2\n", r":2: class: expected one of"),
    (read_candidates, "seriesuid,coordX,coordY,coordZ,class\nu,1,2,3\n", r":2: row: expected 5 fields, got 4"),
    (read_candidates, "seriesuid,coordX,coordY,coordZ,class\nu,1,2,3,0,9\n", r":2: row: expected 5 fields, got 6"),
    (read_candidates, "seriesuid,coordX,coordY,coordZ,class\n,1,2,3,0\n", r":2: seriesuid: empty value"),
    (read_candidates, "seriesuid,coordX,coordY,coordZ,class\nu,1,,3,0\n", r":2: coordY: empty value"),
    (read_candidates, "seriesuid,coordX,coordY,coordZ,class\nu,1,2,3,0\nu,nan,2,3,0\n", r":3: coordX: not a finite"),
    (read_annotations, "seriesuid,coordX,coordY,coordZ,diameter_mm\nu,1,2,3,-4\n", r":2: diameter_mm: negative"),
    (read_annotations, "seriesuid,coordX,coordY,coordZ,diameter_mm\nu,1,2,3,inf\n", r":2: diameter_mm: not a finite"),
    (read_annotations, "seriesuid,coordX,coordX,coordZ,diameter_mm\n", r":1: coordX: column appears twice"),
    (read_annotations, "", r": header: empty file"),
    (
        read_malignancy_annotations,
        "seriesuid,coordX,coordY,coordZ,diameter_mm,mal_bool\nu,1,2,3,4,maybe\n",
        r":2: mal_bool: expected one of",
    ),
    (
        read_malignancy_annotations,
        'seriesuid,coordX,coordY,coordZ,diameter_mm,mal_bool,mal_details\nu,1,2,3,4,True,"[4, x]"\n',
        r":2: mal_details: ratings must be integers",
    ),
    (
        read_malignancy_annotations,
        'seriesuid,coordX,coordY,coordZ,diameter_mm,mal_bool,mal_details\nu,1,2,3,4,True,"[4, 7]"\n',
        r":2: mal_details: ratings must be 1..5",
    ),
    (
        read_malignancy_annotations,
        "seriesuid,coordX,coordY,coordZ,diameter_mm,mal_bool,mal_details\nu,1,2,3,4,True,4\n",
        r":2: mal_details: expected a list",
    ),
]


@pytest.mark.parametrize("reader, text, match", BAD_ROWS)
def test_bad_values_name_file_line_and_field(tmp_path, reader, text, match):
    path = _write(tmp_path, text)
    with pytest.raises(LunaCsvError, match=r"file\.csv" + match):
        reader(path)


def test_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="candidates.csv"):
        read_candidates(tmp_path / "candidates.csv")
