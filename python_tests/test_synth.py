"""The synthetic LUNA16 generator: format, geometry, candidates, determinism, statistics.

The truth for geometry is SimpleITK reading the written files (its own
TransformPhysicalPointToIndex), for the formats LUNA16's published headers,
and for the statistics the real annotations' trends.
"""

from __future__ import annotations

import argparse
import csv
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from torchlite.data.synth import generate_dataset, stats
from torchlite.data.synth.command import add_arguments, run
from torchlite.data.synth.grid import Grid, draw_spec
from torchlite.data.synth.nodules import SHAPES, draw_nodule
from torchlite.data.synth.phantom import AIR, BODY, BONE, LUNGS, Anatomy
from torchlite.data.synth.scan import generate_scan

SEED, N_SCANS, N_SUBSETS = 3, 5, 3
UID_RE = re.compile(r"^1\.3\.6\.1\.4\.1\.14519\.5\.2\.1\.6279\.6001\.[1-9]\d{29}$")
# LUNA16's headers, and the book's annotations_with_malignancy.csv header
HEADERS = {
    "candidates.csv": "seriesuid,coordX,coordY,coordZ,class",
    "annotations.csv": "seriesuid,coordX,coordY,coordZ,diameter_mm",
    "annotations_with_malignancy.csv": "seriesuid,coordX,coordY,coordZ,diameter_mm,mal_bool,mal_details,"
                                       "bboxLowX,bboxLowY,bboxLowZ,bboxHighX,bboxHighY,bboxHighZ,len_mal_details",
}
REAL_MALIGNANCY_CSV = Path(__file__).resolve().parents[2] / "shared" / "luna" / "annotations_with_malignancy.csv"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    summary = generate_dataset(out, N_SCANS, SEED, size="small", n_subsets=N_SUBSETS, progress=False)
    return out, summary


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _xyz(row):
    return [float(row[k]) for k in ("coordX", "coordY", "coordZ")]


@pytest.fixture(scope="module")
def images(dataset):
    out, _ = dataset
    return {p.stem: sitk.ReadImage(str(p)) for p in sorted(out.glob("subset*/*.mhd"))}


def test_csv_headers_are_luna16s(dataset):
    out, _ = dataset
    for name, header in HEADERS.items():
        assert (out / name).read_text().splitlines()[0] == header


def test_malignancy_header_matches_the_books_file():
    if not REAL_MALIGNANCY_CSV.exists():
        pytest.skip("real annotations not available")
    assert REAL_MALIGNANCY_CSV.read_text().splitlines()[0] == HEADERS["annotations_with_malignancy.csv"]


def test_scans_spread_over_subsets_with_luna_uids(dataset, images):
    out, summary = dataset
    mhds = sorted(out.glob("subset*/*.mhd"))
    assert len(mhds) == N_SCANS == summary.n_scans
    assert {p.parent.name for p in mhds} == {f"subset{k}" for k in range(N_SUBSETS)}
    assert all(UID_RE.match(p.stem) for p in mhds)
    assert len({p.stem for p in mhds}) == N_SCANS
    assert not [p for p in out.rglob(".*")], "temporary files left behind"
    series = {r["seriesuid"] for name in HEADERS for r in _rows(out / name)}
    assert series <= set(images)


def test_every_scan_is_little_endian_int16_metaimage(dataset, images):
    out, _ = dataset
    for mhd in out.glob("subset*/*.mhd"):
        header = dict(line.split(" = ", 1) for line in mhd.read_text().splitlines())
        assert header["ElementType"] == "MET_SHORT"
        assert header["BinaryDataByteOrderMSB"] == "False"
        assert header["CompressedData"] == "False"
        assert header["ElementDataFile"] == mhd.stem + ".raw"
        dims = [int(v) for v in header["DimSize"].split()]
        assert mhd.with_suffix(".raw").stat().st_size == 2 * np.prod(dims)
        image = images[mhd.stem]
        assert image.GetPixelID() == sitk.sitkInt16
        x, y, z = image.GetSize()
        assert z <= 128 and x <= 192 and y <= 192
        sx, sy, sz = image.GetSpacing()
        assert 0.6 <= sx == sy <= 0.9 and 1.0 <= sz <= 2.5
        arr = sitk.GetArrayViewFromImage(image)
        assert -3024 <= arr.min() and arr.max() <= 3071


def test_flipped_scans_exist_and_nodules_land_on_nodule_voxels(dataset, images):
    out, _ = dataset
    directions = Counter(images[uid].GetDirection() for uid in images)
    assert directions[(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0)] >= 1
    assert directions[(-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)] >= 1
    by_series = {}
    for row in _rows(out / "annotations.csv"):
        by_series.setdefault(row["seriesuid"], []).append(row)
    flipped_checked = 0
    for uid, rows in by_series.items():
        image = images[uid]
        arr = sitk.GetArrayViewFromImage(image)
        lung = np.median(arr[arr < -500])  # mostly parenchyma and air
        for row in rows:
            c, r, i = image.TransformPhysicalPointToIndex(_xyz(row))
            assert 0 <= i < arr.shape[0] and 0 <= r < arr.shape[1] and 0 <= c < arr.shape[2]
            # every kind, ground glass included, is well above aerated lung (~ -850)
            assert arr[i, r, c] > -650 > lung, f"{uid}: annotation {row} lands on HU {arr[i, r, c]}"
        flipped_checked += image.GetDirection() != (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    assert flipped_checked >= 2


def _uid_of(index, images):
    from torchlite.data.synth.scan import scan_uid

    uid = scan_uid(SEED, index)
    assert uid in images
    return uid


def test_solid_nodule_centres_are_soft_tissue(dataset, images):
    out, _ = dataset
    rows = _rows(out / "annotations_with_malignancy.csv")
    checked = 0
    for index in range(N_SCANS):
        uid = _uid_of(index, images)
        scan = generate_scan(SEED, index, "small", uid)
        written = [r for r in rows if r["seriesuid"] == uid]
        assert len(written) == len(scan.nodules)
        image = images[uid]
        arr = sitk.GetArrayViewFromImage(image)
        for n, row in zip(scan.nodules, written):
            assert float(row["diameter_mm"]) == pytest.approx(n.diameter)
            c, r, i = image.TransformPhysicalPointToIndex(_xyz(row))
            if n.kind == "solid":
                assert arr[i, r, c] > -400, f"solid nodule centre at HU {arr[i, r, c]}"
                checked += 1
    assert checked >= 3


def test_tissue_hu_is_realistic():
    rng = np.random.default_rng(0)
    grid = Grid(draw_spec(rng, "x", "small", "identity"))
    hu, labels = Anatomy.draw(rng, grid).render(grid, rng)
    lung = hu[np.isin(labels, LUNGS)]
    assert -900 < np.median(lung) < -800 and lung.std() > 5  # textured, not flat
    assert np.median(hu[labels == BONE]) > 250
    assert -150 < np.median(hu[labels == BODY]) < 80
    assert np.median(hu[labels == AIR]) == -1000
    assert 0.05 < np.isin(labels, LUNGS).mean() < 0.5


def test_bbox_holds_the_centre_and_mal_bool_follows_the_books_rule(dataset, images):
    out, _ = dataset
    for row in _rows(out / "annotations_with_malignancy.csv"):
        spacing = images[row["seriesuid"]].GetSpacing()
        ratings = [int(v) for v in row["mal_details"].strip("[]").split(",")]
        assert 3 <= len(ratings) == int(row["len_mal_details"]) and all(1 <= v <= 5 for v in ratings)
        assert row["mal_bool"] == str(sum(v >= 4 for v in ratings) >= 2)
        for axis, coord, step in zip("XYZ", _xyz(row), spacing):
            lo, hi = float(row[f"bboxLow{axis}"]), float(row[f"bboxHigh{axis}"])
            # voxel centres: the nodule centre lies within half a voxel of the box
            assert lo - step / 2 <= coord <= hi + step / 2
            assert hi - lo < 3 * float(row["diameter_mm"]) + 5


def test_candidates_positive_near_annotations_negatives_clear(dataset):
    out, summary = dataset
    ann = {}
    for row in _rows(out / "annotations.csv"):
        ann.setdefault(row["seriesuid"], []).append((np.array(_xyz(row)), float(row["diameter_mm"])))
    cands = _rows(out / "candidates.csv")
    assert {r["class"] for r in cands} == {"0", "1"}
    n_pos = 0
    for row in cands:
        p = np.array(_xyz(row))
        nodules = ann.get(row["seriesuid"], [])
        if row["class"] == "1":
            n_pos += 1
            # the book attaches a diameter to a candidate within diameter/4 on each axis
            assert any(np.all(np.abs(p - c) < d / 4) for c, d in nodules)
        else:
            assert all(np.linalg.norm(p - c) > d / 2 for c, d in nodules)
    n_nodules = sum(len(v) for v in ann.values())
    assert n_nodules <= n_pos <= 2 * n_nodules
    assert len(cands) - n_pos > 10 * n_pos  # mostly hard negatives, as in LUNA16
    assert summary.n_candidates == len(cands) and summary.n_positive_candidates == n_pos


def test_some_scans_have_no_nodules(dataset, images):
    out, summary = dataset
    annotated = {r["seriesuid"] for r in _rows(out / "annotations.csv")}
    assert 1 <= len(set(images) - annotated) == summary.n_without_nodules
    assert len(annotated) >= 3


def _digest(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for folder, seed in ((a, 11), (b, 11), (c, 12)):
        generate_dataset(folder, 2, seed, progress=False)
    da, db, dc = _digest(a), _digest(b), _digest(c)
    assert da == db
    assert set(da) != set(dc)  # other series UIDs
    assert sorted(da.values(), key=len)[-1] != sorted(dc.values(), key=len)[-1]


def test_a_scan_does_not_depend_on_the_dataset_size(dataset, tmp_path):
    out, _ = dataset
    generate_dataset(tmp_path, 2, SEED, n_subsets=N_SUBSETS, progress=False)
    first = sorted(tmp_path.glob("subset0/*.raw"))[0]
    assert first.read_bytes() == (out / "subset0" / first.name).read_bytes()


def test_full_size_spec_is_realistic():
    rng = np.random.default_rng(1)
    specs = [draw_spec(rng, "x", "full", "identity") for _ in range(50)]
    assert all(s.shape[1:] == (512, 512) for s in specs)
    extents = [s.shape[0] * s.spacing[2] for s in specs]
    assert min(extents) >= 270 and max(extents) <= 370
    assert max(s.shape[0] for s in specs) >= 280


def test_malignancy_rises_with_diameter_and_irregular_margin():
    rng = np.random.default_rng(0)
    diameters = stats.sample_diameters(rng, 4000)
    nodules = [draw_nodule(rng, d) for d in diameters]
    malignant = np.array([n.malignant for n in nodules])
    # the real annotations: median 6.4 mm, 32 % malignant, malignant mean 13.0 mm vs benign 6.1 mm
    assert 6.0 < np.median(diameters) < 6.9
    assert 0.25 < malignant.mean() < 0.40
    assert diameters[malignant].mean() > 1.7 * diameters[~malignant].mean()
    frac = [malignant[(diameters >= lo) & (diameters < hi)].mean() for lo, hi in ((3, 5), (6, 8), (10, 15), (15, 40))]
    assert frac == sorted(frac) and frac[0] < 0.1 and frac[-1] > 0.85
    mid = (diameters >= 6) & (diameters < 12)  # same sizes, different margins
    by_shape = {s: malignant[mid & np.array([n.shape == s for n in nodules])].mean() for s in SHAPES}
    assert by_shape["smooth"] < by_shape["lobulated"] < by_shape["spiculated"]
    kinds = Counter(n.kind for n in nodules)
    assert kinds["solid"] > kinds["ground-glass"] > 0 and kinds["part-solid"] > 0


def test_bad_arguments_name_the_argument(tmp_path):
    with pytest.raises(ValueError, match="n_scans"):
        generate_dataset(tmp_path, 0, 0)
    with pytest.raises(ValueError, match="n_scans"):
        generate_dataset(tmp_path, 1.5, 0)
    with pytest.raises(ValueError, match="seed"):
        generate_dataset(tmp_path, 1, -1)
    with pytest.raises(ValueError, match="size"):
        generate_dataset(tmp_path, 1, 0, size="huge")
    with pytest.raises(ValueError, match="n_subsets"):
        generate_dataset(tmp_path, 1, 0, n_subsets=0)
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="out_dir"):
        generate_dataset(tmp_path / "file", 1, 0)


def test_existing_dataset_is_kept_unless_overwrite(tmp_path):
    generate_dataset(tmp_path, 1, 0, progress=False)
    before = _digest(tmp_path)
    with pytest.raises(FileExistsError, match="overwrite"):
        generate_dataset(tmp_path, 1, 1, progress=False)
    assert _digest(tmp_path) == before
    (tmp_path / "notes.txt").write_text("mine")
    generate_dataset(tmp_path, 1, 1, progress=False, overwrite=True)
    after = _digest(tmp_path)
    assert after["notes.txt"] == b"mine"  # only the dataset's own files are replaced
    assert len(list(tmp_path.glob("subset*/*.mhd"))) == 1 and after != before


def test_command_line(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    out = tmp_path / "ds"
    assert run(parser.parse_args(["--out", str(out), "--scans", "1", "--seed", "4", "--no-progress"])) == 0
    assert "1 small scans" in capsys.readouterr().out
    assert len(list(out.glob("subset0/*.mhd"))) == 1 and (out / "candidates.csv").exists()
    assert run(parser.parse_args(["--out", str(out), "--scans", "1"])) == 2  # refuses to clobber
    assert run(parser.parse_args(["--out", str(tmp_path / "x"), "--scans", "0"])) == 2
