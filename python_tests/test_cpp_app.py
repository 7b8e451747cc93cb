"""torchlite-app (cpp_app/): the C++ program finds what `torchlite analyze` finds.

Truths: `torchlite analyze` itself on the same models and scans (the issue's
parity rule: the same detections, centers within 0.5 voxel, probabilities
within 1e-4), on synthetic scans with and without flipped axes, through
TorchScript and AOTInductor, both with the lung region (the default: the
U-Net sees only the box holding the lungs) and with `--whole-scan`; Python's
`lung_box` for the box itself (integer-equal, on full-size and small scans,
and its fallback to the whole scan with the same reason); the published
grouping rules and geometry formula on a hand-made scan whose groups are
known by construction; and the error contract (one `error:` line, exit 2; a
failing scan among several is reported and the others analyzed, exit 1).

Models are untrained, with BatchNorm statistics measured on HU-range input
(as in test_export.py), so outputs are not saturated; a high threshold keeps
the noisy segmentation to a few dozen groups.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from _calibrated_models import calibrated
from _cpp_build import cpp_build_dir
from _ct_files import write_scan
from torchlite.analysis.lung_region import lung_box
from torchlite.analysis.segment import CONTEXT, _grid_window
from torchlite.cli import main as torchlite_main
from torchlite.data.datasets.patch_dataset import PATCH_SIZE
from torchlite.data.geometry import Geometry
from torchlite.data.metaimage import read_header
from torchlite.data.scan import CtScan
from torchlite.data.synth import generate_dataset
from torchlite.models import LunaModel, UNetWrapper

THRESHOLD = "0.999"  # untrained U-Net: ~50 groups over the two scans (0.5 would give thousands)
CENTER_TOL = 0.5  # voxels (issue 6)
PROB_TOL = 1e-4


def _run(cmd, **kw):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300, **kw)


@pytest.fixture(scope="session")
def app(tmp_path_factory) -> Path:
    return cpp_build_dir() / "torchlite-app"


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> Path:
    """A model bundle (checkpoints as `torchlite train` writes them) and its TorchScript export."""
    folder = tmp_path_factory.mktemp("app_models")
    torch.manual_seed(0)
    eager = {"seg": calibrated(UNetWrapper(), (4, 2 * CONTEXT + 1, 64, 64), 100),
             "cls": calibrated(LunaModel(), (4, 1, *PATCH_SIZE), 200),
             "mal": calibrated(LunaModel(), (4, 1, *PATCH_SIZE), 300)}
    for task, model in eager.items():
        torch.save({"task": task, "model": model.state_dict(), "epoch": 1}, folder / f"{task}.pt")
    assert torchlite_main(["export", "--models", str(folder), "--format", "torchscript"]) == 0
    return folder


@pytest.fixture(scope="session")
def scans(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("app_synth")
    generate_dataset(root, 2, seed=1, size="small", progress=False)
    paths = sorted(root.glob("subset*/*.mhd"))
    kinds = {tuple(read_header(p).direction) for p in paths}
    assert (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0) in kinds and len(kinds) == 2  # seed 1: identity + flip_z
    return paths


def _analyze(models, scans, out, *extra) -> dict:
    assert torchlite_main(["analyze", "--models", str(models), "--ct", *map(str, scans), "--out", str(out),
                           "--threshold", THRESHOLD, "--views", "0", "--no-progress", "--device", "cpu", *extra]) == 0
    return json.loads((out / "report.json").read_text())


@pytest.fixture(scope="session")
def python_result(tmp_path_factory, models, scans) -> dict:
    """`torchlite analyze` as it runs by default: the U-Net on each scan's lung region only."""
    return _analyze(models, scans, tmp_path_factory.mktemp("app_py"))


@pytest.fixture(scope="session")
def python_whole_result(tmp_path_factory, models, scans) -> dict:
    """`torchlite analyze --whole-scan`: the U-Net on every voxel."""
    return _analyze(models, scans, tmp_path_factory.mktemp("app_py_whole"), "--whole-scan")


def _app_run(app, export_dir, scans, out_dir, *extra):
    csv_path, report = out_dir / "detections.csv", out_dir / "report.json"
    result = _run([app, "--models", export_dir, "--ct", *scans, "--out", csv_path, "--report", report,
                   "--threshold", THRESHOLD, *extra])
    return result, csv_path, report


def _assert_same_detections(cpp_scan: dict, py_scan: dict, malignancy: bool):
    """Same groups: each Python detection has one C++ detection within 0.5 voxel, same probabilities."""
    want, got = py_scan["detections"], cpp_scan["detections"]
    assert len(got) == len(want), (cpp_scan["series_uid"], len(got), len(want))
    unused = list(range(len(got)))
    for w in want:
        distances = [max(abs(a - b) for a, b in zip(got[k]["irc"], w["irc"])) for k in unused]
        k = unused.pop(int(np.argmin(distances)))
        g = got[k]
        assert min(distances) <= CENTER_TOL, (w, g)
        assert g["voxels"] == w["voxels"] and g["diameter_mm"] == pytest.approx(w["diameter_mm"], abs=1e-3)
        assert g["probability"] == pytest.approx(w["probability"], abs=PROB_TOL)
        if malignancy:
            assert g["malignancy"] == pytest.approx(w["malignancy"], abs=PROB_TOL)
        else:
            assert g["malignancy"] is None
    probs = [d["probability"] for d in got]
    assert probs == sorted(probs, reverse=True)  # by decreasing nodule probability, as the Python report


def test_torchscript_matches_torchlite_analyze(app, models, scans, python_result, tmp_path):
    result, csv_path, report_path = _app_run(app, models / "exported", scans, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(report_path.read_text())
    assert [s["series_uid"] for s in report["scans"]] == [p.stem for p in scans]  # uid = the file stem
    assert report["config"]["lung_region"] is True and python_result["config"]["lung_region"] is True
    for key in ("seg_batch_size", "cls_batch_size"):  # the manifest carries analyze's batch sizes to the app
        assert report["config"][key] == python_result["config"][key], key
    total = 0
    for cpp_scan, py_scan, path in zip(report["scans"], python_result["scans"], scans):
        assert cpp_scan["shape"] == py_scan["shape"] and cpp_scan["spacing_xyz"] == py_scan["spacing_xyz"]
        # the same box segmented (a part of the scan: the lungs were found)
        assert py_scan["lung_region"]["found"] and py_scan["lung_region"]["fraction"] < 0.75
        assert cpp_scan["lung_region"] == py_scan["lung_region"]
        _assert_same_detections(cpp_scan, py_scan, malignancy=True)
        # xyz from the C++ geometry is the Python Geometry's xyz of the same center (flipped axes too).
        h = read_header(path)
        geometry = Geometry(h.origin, h.spacing, h.direction, h.shape)
        for d in cpp_scan["detections"]:
            np.testing.assert_allclose(d["xyz"], geometry.irc_to_xyz(d["irc"]), atol=1e-9)
        assert set(cpp_scan["seconds"]) == set(py_scan["seconds"])
        total += len(cpp_scan["detections"])
    assert total >= 10 and all(s["detections"] for s in report["scans"])  # not a vacuous comparison
    # The CSV is the Python writer's format: same header, rows = the report's detections in order.
    with open(csv_path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["seriesuid", "coordX", "coordY", "coordZ", "probability", "malignancy"]
    flat = [(s["series_uid"], d) for s in report["scans"] for d in s["detections"]]
    assert len(rows) - 1 == len(flat)
    for row, (uid, d) in zip(rows[1:], flat):
        assert row[0] == uid and [float(v) for v in row[1:4]] == d["xyz"]
        assert float(row[4]) == d["probability"] and float(row[5]) == d["malignancy"]


def test_whole_scan_matches_torchlite_analyze_whole_scan(app, models, scans, python_result, python_whole_result,
                                                         tmp_path):
    """--whole-scan on both sides: every voxel segmented, no box recorded, the same detections."""
    result, _, report_path = _app_run(app, models / "exported", scans, tmp_path, "--whole-scan")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(report_path.read_text())
    assert report["config"]["lung_region"] is False and python_whole_result["config"]["lung_region"] is False
    for cpp_scan, py_scan in zip(report["scans"], python_whole_result["scans"]):
        assert cpp_scan["lung_region"] is None and py_scan["lung_region"] is None
        assert "lung_region" not in cpp_scan["seconds"] and set(cpp_scan["seconds"]) == set(py_scan["seconds"])
        _assert_same_detections(cpp_scan, py_scan, malignancy=True)
    # Not the same run as the default: the untrained U-Net marks voxels everywhere, and the lung region
    # skips the groups outside the box.
    whole = sum(len(s["detections"]) for s in report["scans"])
    assert sum(len(s["detections"]) for s in python_result["scans"]) < whole


def test_aoti_matches_torchlite_analyze_on_one_scan(app, models, scans, python_result, tmp_path):
    """AOTInductor packages (seg and cls only: the malignancy model is optional) on the flipped scan."""
    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("AOTInductor export needs a C++ compiler")
    export = tmp_path / "aoti"
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    for task in ("seg", "cls"):
        shutil.copy(models / f"{task}.pt", bundle / f"{task}.pt")
    assert torchlite_main(["export", "--models", str(bundle), "--out", str(export), "--format", "aoti"]) == 0
    flipped = next(k for k, p in enumerate(scans) if read_header(p).direction[8] == -1.0)
    result, _, report_path = _app_run(app, export, [scans[flipped]], tmp_path, "--format", "aoti")
    assert result.returncode == 0, result.stderr[-3000:]
    cpp_scan = json.loads(report_path.read_text())["scans"][0]
    _assert_same_detections(cpp_scan, python_result["scans"][flipped], malignancy=False)
    # Without a TorchScript file in this export, asking for one is a clean error naming the field.
    result, _, _ = _app_run(app, export, [scans[flipped]], tmp_path, "--format", "torchscript")
    _assert_one_error(result, "models.seg.files.torchscript")
    # The default, auto, takes the packages when every model has one for this device ...
    result, _, report_path = _app_run(app, export, [scans[flipped]], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(report_path.read_text())["format"] == "aoti"
    # ... and TorchScript otherwise (this export has no AOTInductor packages).
    result, _, report_path = _app_run(app, models / "exported", [scans[flipped]], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(report_path.read_text())["format"] == "torchscript"


# --- the lung region: Python's box, its fallback, its window at the scan's edge ---

class NoNodule(nn.Module):
    """Probability 0 everywhere: no groups, so a run is the lung-region search and a cheap segmentation."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x[:, :1])


def _export_with_seg(models: Path, folder: Path, seg: nn.Module) -> Path:
    shutil.copytree(models / "exported", folder)
    torch.jit.save(torch.jit.script(seg), str(folder / "seg.ts.pt"))
    return folder


@pytest.fixture(scope="session")
def full_scan(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("app_synth_full")
    generate_dataset(root, 1, seed=0, size="full", progress=False)  # 512 x 512 in-plane
    return next(root.glob("subset*/*.mhd"))


def _python_box(path: Path) -> dict:
    scan = CtScan(path).open()
    return lung_box(scan.tensor, scan.geometry.spacing[::-1]).to_json()


def test_the_box_is_python_lung_box_on_full_size_and_small_scans(app, models, scans, full_scan, tmp_path):
    export = _export_with_seg(models, tmp_path / "export", NoNodule())
    paths = [full_scan, *scans]
    result = _run([app, "--models", export, "--ct", *paths, "--out", tmp_path / "d.csv", "--report", tmp_path / "r.json"])
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["scans"][0]["shape"][1:] == [512, 512]
    for path, scan in zip(paths, report["scans"]):
        want = _python_box(path)
        assert want["found"] and want["fraction"] < 0.75, (path.name, want)
        assert scan["lung_region"] == want, path.name  # box_irc integer-equal, same fraction
        assert "lung_region" in scan["seconds"]
    assert report["scans"][0]["lung_region"]["fraction"] < 0.5  # a full-size chest: about a third
    assert "using the whole scan" not in result.stderr


def test_without_lungs_the_box_falls_back_to_the_whole_scan(app, models, scans, tmp_path):
    export = _export_with_seg(models, tmp_path / "export", NoNodule())
    chest = CtScan(scans[0]).open().array
    phantom = np.full((20, 64, 64), -1000, dtype=np.int16)
    phantom[8:12, 20:30, 20:30] = 100
    volumes = {"uniform": np.full((20, 64, 64), 40, dtype=np.int16),  # no air
               "air": np.full((20, 64, 64), -1000, dtype=np.int16),  # all air touches the border
               "phantom": phantom,
               "lung_only": np.ascontiguousarray(chest[:, 70:100, 40:65]),  # too little air inside
               "cut": np.ascontiguousarray(chest[:, :, chest.shape[2] // 4:])}  # lungs cut by the field of view
    paths = [write_scan(tmp_path / "scans" / f"{name}.mhd", v, spacing=read_header(scans[0]).spacing)
             for name, v in volumes.items()]
    result = _run([app, "--models", export, "--ct", *paths, "--out", tmp_path / "d.csv", "--report", tmp_path / "r.json"])
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "r.json").read_text())
    reasons = set()
    for path, scan in zip(paths, report["scans"]):
        want = _python_box(path)
        d, h, w = scan["shape"]
        assert want["found"] is False and want["box_irc"] == [0, d, 0, h, 0, w] and want["fraction"] == 1.0
        assert scan["lung_region"] == want, path.name  # the same reason too
        assert f"{path.stem}: lung region: using the whole scan ({d}, {h}, {w}): {want['reason']}" in result.stderr
        reasons.add(want["reason"].split(" (")[0])
    assert len(reasons) == 4 and "cut" in report["scans"][-1]["lung_region"]["reason"]  # every fallback rule


def test_a_window_padded_at_the_scan_edge_matches_torchlite_analyze(app, models, scans, tmp_path):
    """A box reaching the scan's bottom and right edges, whose sizes are no multiple of 4: the window is
    padded with air there, as segment.py pads it."""
    header = read_header(scans[1])
    chest = CtScan(scans[1]).open().array
    box = _python_box(scans[1])["box_irc"]
    cropped = np.ascontiguousarray(chest[:, :box[3] - 3, :box[5] - 3])  # lungs + margin still reach the edges
    path = write_scan(tmp_path / "scans" / "edge.mhd", cropped, spacing=header.spacing, origin=header.origin,
                      direction=header.direction)
    want = _python_box(path)
    z0, z1, y0, y1, x0, x1 = want["box_irc"]
    assert want["found"] and y1 == cropped.shape[1] and x1 == cropped.shape[2]
    assert _grid_window(y0, y1, cropped.shape[1])[2] > 0 and _grid_window(x0, x1, cropped.shape[2])[2] > 0
    py_scan = _analyze(models, [path], tmp_path / "py")["scans"][0]
    result, _, report_path = _app_run(app, models / "exported", [path], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    cpp_scan = json.loads(report_path.read_text())["scans"][0]
    assert cpp_scan["lung_region"] == py_scan["lung_region"] == want
    assert py_scan["detections"]  # not a vacuous comparison
    _assert_same_detections(cpp_scan, py_scan, malignancy=True)


# --- the grouping rules and geometry on a scan whose answer is known --------

class MiddleSliceAboveZero(nn.Module):
    """Probability sigmoid(HU / 10) of the middle slice: a voxel is marked (> 0.5) exactly where HU > 0."""

    def __init__(self) -> None:
        super().__init__()
        self.middle = CONTEXT  # an attribute: TorchScript reads no module globals

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x[:, self.middle:self.middle + 1] / 10.0)


def test_groups_follow_the_published_rules_on_a_hand_made_scan(app, models, tmp_path):
    export = tmp_path / "export"
    shutil.copytree(models / "exported", export)
    torch.jit.save(torch.jit.script(MiddleSliceAboveZero()), str(export / "seg.ts.pt"))
    hu = np.full((12, 21, 23), -1000, dtype=np.int16)  # H, W not multiples of 4: padded and cropped back
    hu[3:8, 4:9, 5:10] = 100  # a 5x5x5 cube ...
    hu[3:8, 4:9, 8:10] = 500  # ... heavier on its high-column side
    hu[10, 12:15, 2:5] = 300  # a 3x3 square on one slice
    hu[9, 0:3, 16:19] = 200  # a 3x3 square touching the scan's edge (row 0)
    # (no air inside a body: the lung region falls back to the whole scan, every voxel is segmented)
    spacing, origin = (0.7, 0.8, 2.5), (-12.5, 30.25, -101.0)
    direction = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)  # flip_xy
    mhd = write_scan(tmp_path / "hand.mhd", hu, spacing=spacing, origin=origin, direction=direction)
    out = tmp_path / "out"
    out.mkdir()
    result = _run([app, "--models", export, "--ct", mhd, "--out", out / "d.csv", "--report", out / "r.json",
                   "--threshold", "0.5"])
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads((out / "r.json").read_text())["scans"][0]["detections"]

    # One in-plane erosion (4 neighbours, beyond the scan = 0) leaves the 3x3 core of each slice of the
    # cube, the center voxel of the square, and (row 1, col 17) of the edge square; 6-connected groups.
    core = [(i, r, c) for i in range(3, 8) for r in range(5, 8) for c in range(6, 9)]
    weights = np.array([min(hu[v], 1000) + 1001.0 for v in core])
    cube_center = (np.array(core, dtype=np.float64) * weights[:, None]).sum(0) / weights.sum()
    expected = {45: cube_center, 1: None}
    spacing_irc = np.array(spacing[::-1])
    assert sorted(d["voxels"] for d in got) == [1, 1, 45]
    singles = sorted(tuple(d["irc"]) for d in got if d["voxels"] == 1)
    assert singles == [(9.0, 1.0, 17.0), (10.0, 13.0, 3.0)]
    cube = next(d for d in got if d["voxels"] == 45)
    np.testing.assert_allclose(cube["irc"], expected[45], atol=1e-9)
    assert cube_center[2] > 7.0  # the heavy side pulls the center (the weighting is not uniform)
    for d in got:
        cri = np.array(d["irc"][::-1]) * np.array(spacing)
        np.testing.assert_allclose(d["xyz"], np.array(origin) + np.array(direction).reshape(3, 3) @ cri, atol=1e-9)
        volume = d["voxels"] * float(np.prod(spacing_irc))
        diameter = 2 * (3 * volume / (4 * math.pi)) ** (1 / 3) + 2 * float(np.mean(spacing_irc[1:]))
        assert d["diameter_mm"] == pytest.approx(diameter, abs=5e-4)
        assert 0.0 <= d["probability"] <= 1.0 and 0.0 <= d["malignancy"] <= 1.0


# --- errors ---------------------------------------------------------------

def _assert_one_error(result, *needles, code=2):
    assert result.returncode == code, (result.returncode, result.stderr[-2000:])
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr[-2000:]
    for needle in needles:
        assert needle in errors[0], errors[0]


def test_bad_command_lines_and_model_folders(app, models, scans, tmp_path):
    ok = ["--ct", scans[0], "--out", tmp_path / "d.csv"]
    _assert_one_error(_run([app, "--ct", scans[0], "--out", tmp_path / "d.csv"]), "--models")
    _assert_one_error(_run([app, "--models", models / "exported", *ok, "--format", "onnx"]), "--format", "onnx")
    _assert_one_error(_run([app, "--models", models / "exported", *ok, "--threads", "x"]), "--threads")
    _assert_one_error(_run([app, "--models", models / "exported", *ok, "--threshold", "1.5"]), "--threshold")
    _assert_one_error(_run([app, "--models", models / "exported", "--ct", tmp_path / "none.mhd",
                            "--out", tmp_path / "d.csv"]), "none.mhd", "no such file")
    _assert_one_error(_run([app, "--models", tmp_path, *ok]), "manifest.json")  # not an export folder

    broken = tmp_path / "broken"
    shutil.copytree(models / "exported", broken)
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["pipeline"]["grouping"]["threshold"] = "half"
    (broken / "manifest.json").write_text(json.dumps(manifest))
    _assert_one_error(_run([app, "--models", broken, *ok]), "pipeline.grouping.threshold", "expected a number")
    (broken / "manifest.json").write_text("{\"format_version\": 1,")
    _assert_one_error(_run([app, "--models", broken, *ok]), "not valid JSON")
    shutil.copy(models / "exported" / "manifest.json", broken / "manifest.json")
    (broken / "cls.ts.pt").unlink()
    _assert_one_error(_run([app, "--models", broken, *ok]), "cls.ts.pt", "no such cls model file")
    (broken / "cls.ts.pt").write_bytes(b"not a model")
    _assert_one_error(_run([app, "--models", broken, *ok]), "cls.ts.pt", "cannot load as torchscript")
    assert not (tmp_path / "d.csv").exists()  # nothing written on a bad start


def test_a_broken_scan_is_reported_and_the_others_analyzed(app, models, scans, tmp_path):
    broken = tmp_path / "broken.mhd"
    broken.write_text("NDims = 3\nDimSize = 4 4 4\nElementSpacing = 1 1 1\nElementType = MET_NOPE\n"
                      "ElementDataFile = broken.raw\n")
    small = tmp_path / "small"
    small.mkdir()
    hu = np.full((8, 16, 16), -1000, dtype=np.int16)
    one = write_scan(small / "one.mhd", hu)
    result = _run([app, "--models", models / "exported", "--ct", broken, one, "--out", tmp_path / "d.csv",
                   "--report", tmp_path / "r.json"])
    _assert_one_error(result, "broken.mhd", code=1)
    report = json.loads((tmp_path / "r.json").read_text())
    assert [s["series_uid"] for s in report["scans"]] == ["one"]
    assert [e["series_uid"] for e in report["errors"]] == ["broken"]
    assert (tmp_path / "d.csv").read_text().splitlines()[0].startswith("seriesuid,")
    # Only broken scans: nothing was analyzed, a failure of the run.
    _assert_one_error(_run([app, "--models", models / "exported", "--ct", broken, "--out", tmp_path / "e.csv"]),
                      "broken.mhd")
