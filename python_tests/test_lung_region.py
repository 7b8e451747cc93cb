"""The lung region: the box of a scan the U-Net needs to see (torchlite.analysis.lung_region).

Truths: the synthetic scans' annotated nodules (annotations.csv, through each
scan's own geometry, flipped axes included) all lie inside the box, a full-size
scan's box is a fraction of it, volumes with no lungs (or lungs cut by the
field of view) fall back to the whole scan, and the analysis with the box finds
exactly the detections of the analysis of every voxel, with a segmentation
oracle that, like a trained U-Net, marks dense tissue surrounded by lung.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from _ct_files import write_scan
from torchlite.analysis.bundle import ModelBundle
from torchlite.analysis.lung_region import MARGIN_MM, LungBox, lung_box
from torchlite.analysis.pipeline import AnalysisConfig, analyze_scan
from torchlite.analysis.segment import segment_volume
from torchlite.cli import main as torchlite_main
from torchlite.data.discovery import discover_scans
from torchlite.data.luna_csv import read_annotations
from torchlite.data.scan import CtScan
from torchlite.data.synth import generate_dataset
from torchlite.models import LunaModel, UNetWrapper


def _scans_with_nodules(root):
    """[(CtScan, [(center irc float, radius mm)])] of a synthetic dataset."""
    by_uid: dict[str, list] = {}
    for a in read_annotations(root / "annotations.csv"):
        by_uid.setdefault(a.series_uid, []).append(a)
    out = []
    for uid, path in sorted(discover_scans(root).items()):
        scan = CtScan(path).open()
        nodules = [(scan.geometry.xyz_to_irc_float(np.array(a.center_xyz)), a.diameter_mm / 2)
                   for a in by_uid.get(uid, [])]
        out.append((scan, nodules))
    return out


@pytest.fixture(scope="module")
def small_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("lung_small")
    generate_dataset(root, 6, seed=0, size="small", progress=False)  # scans 1 and 2 have flipped axes
    return root


@pytest.fixture(scope="module")
def full_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("lung_full")
    generate_dataset(root, 1, seed=0, size="full", progress=False)  # 195 x 512 x 512, 2 nodules
    return root


def _assert_nodules_inside(scan: CtScan, box: LungBox, nodules):
    spacing = scan.geometry.spacing[::-1]
    lo = np.array([box.z0, box.y0, box.x0], dtype=np.float64)
    hi = np.array([box.z1, box.y1, box.x1], dtype=np.float64) - 1
    at_scan_lo, at_scan_hi = lo == 0, hi == np.array(scan.shape) - 1
    for center, radius_mm in nodules:
        reach = radius_mm / spacing  # the whole nodule, in voxels per axis
        assert np.all(center - reach >= lo) and np.all(center + reach <= hi), (scan.series_uid, center, box)
        # its center keeps the margin from every edge of the box that is not the scan's own
        assert np.all(at_scan_lo | ((center - lo) * spacing >= MARGIN_MM)), (scan.series_uid, center, box)
        assert np.all(at_scan_hi | ((hi - center) * spacing >= MARGIN_MM)), (scan.series_uid, center, box)


def test_every_annotated_nodule_lies_inside_the_box_on_small_scans(small_root):
    scans = _scans_with_nodules(small_root)
    assert sum(len(n) for _, n in scans) >= 8 and len({tuple(s.header.direction) for s, _ in scans}) == 3
    for scan, nodules in scans:
        box = lung_box(scan.tensor, scan.geometry.spacing[::-1])
        assert box.found and box.shape == scan.shape and box.fraction < 0.75, box
        _assert_nodules_inside(scan, box, nodules)


def test_a_full_size_scan_box_holds_its_nodules_in_a_fraction_of_the_voxels(full_root):
    ((scan, nodules),) = _scans_with_nodules(full_root)
    assert scan.shape[1:] == (512, 512) and nodules
    box = lung_box(scan.tensor, scan.geometry.spacing[::-1])
    assert box.found and box.fraction < 0.5, box  # ~0.34: ~90% of the slices, ~38% of each
    assert box.box_shape[0] < scan.shape[0] and box.box_shape[1] * box.box_shape[2] < 0.5 * 512 * 512
    _assert_nodules_inside(scan, box, nodules)
    assert lung_box(scan.array, scan.geometry.spacing[::-1]) == box  # numpy in, the same box
    record = json.loads(json.dumps(box.to_json()))
    assert record["box_irc"] == [box.z0, box.z1, box.y0, box.y1, box.x0, box.x1] and record["found"] is True


CHEST_SPACING = (2.5, 2.0, 2.0)  # (I, R, C) mm: each lung of the tiny chest holds ~30 mL


def _chest(shape=(12, 64, 64)) -> np.ndarray:
    """A tiny chest: air, an elliptic body of soft tissue, two elliptic lungs (-850 HU) in it."""
    d, h, w = shape
    r, c = np.mgrid[0:h, 0:w]
    volume = np.full(shape, -1000, dtype=np.int16)
    body = ((r - h / 2) / (0.4 * h)) ** 2 + ((c - w / 2) / (0.45 * w)) ** 2 < 1
    volume[:, body] = 40
    for cc in (0.3 * w, 0.7 * w):
        lung = ((r - h / 2) / (0.25 * h)) ** 2 + ((c - cc) / (0.12 * w)) ** 2 < 1
        volume[2:d - 2, lung] = -850
    return volume


def test_the_box_of_a_tiny_chest_is_its_lungs_and_the_margin():
    volume = _chest()
    box = lung_box(torch.from_numpy(volume), CHEST_SPACING, margin_mm=3.0)
    lungs = np.argwhere(volume == -850)
    lo, hi = lungs.min(0), lungs.max(0) + 1
    grow = [math.ceil(3.0 / s) for s in CHEST_SPACING]
    expected = [max(0, lo[0] - grow[0]), min(12, hi[0] + grow[0]), lo[1] - grow[1], hi[1] + grow[1],
                lo[2] - grow[2], hi[2] + grow[2]]
    assert box.found and [box.z0, box.z1, box.y0, box.y1, box.x0, box.x1] == expected
    assert lung_box(volume, CHEST_SPACING, margin_mm=0.0).box_shape == tuple(hi - lo)
    # the same voxels 1 mm apart in-plane: lungs of ~8 mL each, too small to be lungs
    small = lung_box(volume, (2.5, 1.0, 1.0))
    assert not small.found and small.is_whole and "lung-sized" in small.reason


@pytest.mark.parametrize("name", ["uniform 40 HU", "all air", "phantom in air", "lung only", "lungs cut by the FOV"])
def test_volumes_without_lungs_inside_a_body_fall_back_to_the_whole_scan(name, small_root, caplog):
    scan = _scans_with_nodules(small_root)[0][0]
    full = scan.array
    if name == "uniform 40 HU":
        volume = np.full((20, 64, 64), 40, dtype=np.int16)
    elif name == "all air":
        volume = np.full((20, 64, 64), -1000, dtype=np.int16)
    elif name == "phantom in air":  # dense spheres in air, as test_analysis's phantom
        volume = np.full((20, 64, 64), -1000, dtype=np.int16)
        volume[8:12, 20:30, 20:30] = 100
    elif name == "lung only":  # a block inside the right lung: its air touches every border
        volume = np.ascontiguousarray(full[30:60, 70:100, 40:65])
        assert np.mean(volume < -400) > 0.8
    else:  # columns cut off through a lung: the border test would drop the cut lung's air
        volume = np.ascontiguousarray(full[:, :, full.shape[2] // 4:])
    with caplog.at_level("INFO", logger="torchlite.analysis.lung_region"):
        box = lung_box(volume, scan.geometry.spacing[::-1])
    assert not box.found and box.is_whole and box.fraction == 1.0 and box.reason
    assert box == LungBox.whole(volume.shape, box.reason)
    assert "whole scan" in caplog.text
    if name == "lungs cut by the FOV":
        assert "cut" in box.reason


def test_bad_input_is_a_clear_error():
    volume = torch.from_numpy(_chest())
    spacing = CHEST_SPACING
    with pytest.raises(ValueError, match=r"\(D, H, W\)"):
        lung_box(volume[0], spacing)
    with pytest.raises(ValueError, match=r"\(D, H, W\)"):
        lung_box(volume[None], spacing)
    with pytest.raises(ValueError, match=r"\(D, H, W\)"):
        lung_box(volume[:0], spacing)
    with pytest.raises(ValueError, match="dtype"):
        lung_box(volume > 0, spacing)
    with pytest.raises(ValueError, match="dtype"):
        lung_box(volume.to(torch.uint8), spacing)
    with pytest.raises(ValueError, match="dtype"):
        lung_box(np.zeros((2, 4, 4), dtype=np.uint16), spacing)
    with pytest.raises(TypeError, match="torch.Tensor or numpy array"):
        lung_box(_chest().tolist(), spacing)
    for bad in [(1.0, 1.0), (0.0, 1.0, 1.0), (1.0, float("nan"), 1.0), "abc"]:
        with pytest.raises(ValueError, match="spacing_irc"):
            lung_box(volume, bad)
    with pytest.raises(ValueError, match="margin_mm"):
        lung_box(volume, spacing, margin_mm=-1.0)
    # float HU is accepted, and gives the integer scan's box
    assert lung_box(volume.float(), spacing) == lung_box(volume, spacing)


# --- segment_volume on a box -----------------------------------------------------


class LowestContextSlice(nn.Module):
    """1 where the lowest context slice (i - 3) is denser than -400 HU."""

    def forward(self, x):
        return (x[:, 0:1] > -400).float()


def test_segment_volume_on_a_box_reads_context_from_the_whole_scan():
    volume = torch.randint(-1000, 1000, (10, 21, 23), dtype=torch.int16)
    box = (2, 7, 3, 18, 5, 19)
    prob = segment_volume(volume, LowestContextSlice(), batch_size=3, box=box)
    expected = torch.zeros(volume.shape)
    for i in range(2, 7):
        expected[i, 3:18, 5:19] = (volume[max(i - 3, 0), 3:18, 5:19] > -400).float()  # slice i - 3, outside the box
    assert torch.equal(prob, expected)
    # a LungBox works the same, and the whole scan as a box is the default
    as_box = LungBox(2, 7, 3, 18, 5, 19, tuple(volume.shape), True)
    assert torch.equal(segment_volume(volume, LowestContextSlice(), box=as_box), expected)
    assert torch.equal(segment_volume(volume, LowestContextSlice(), box=(0, 10, 0, 21, 0, 23)),
                       segment_volume(volume, LowestContextSlice()))


@pytest.mark.parametrize("box", [(1, 3, 30, 70, 40, 90), (1, 3, 5, 95, 7, 99), (0, 4, 61, 100, 0, 33)])
def test_segment_volume_on_a_box_is_the_whole_slice_output_inside_the_box(box):
    # The window is read UNET_REACH wider than the box: no pixel of the box sees the window's edge.
    torch.manual_seed(0)
    volume = torch.randint(-1000, 1000, (4, 100, 100), dtype=torch.int16)
    unet = UNetWrapper().eval()
    whole = segment_volume(volume, unet, batch_size=4, channels_last=False)
    boxed = segment_volume(volume, unet, batch_size=4, channels_last=False, box=box)
    z0, z1, y0, y1, x0, x1 = box
    inside = (slice(z0, z1), slice(y0, y1), slice(x0, x1))
    outside = torch.ones(volume.shape, dtype=torch.bool)
    outside[inside] = False
    assert boxed[outside].eq(0).all() and not boxed[inside].eq(0).all()
    # Convolutions on a smaller input may sum in another order: float rounding only.
    torch.testing.assert_close(boxed[inside], whole[inside], atol=1e-5, rtol=1e-5)


def test_the_unet_reach_is_what_the_unet_reaches():
    # An input pixel moves outputs up to UNET_REACH - 1 pixels away, and no farther.
    from torchlite.analysis.segment import UNET_REACH

    torch.manual_seed(0)
    unet = UNetWrapper().eval()
    x = torch.randn(1, 7, 128, 128) * 200
    reach = 0
    with torch.no_grad():
        base = unet(x)
        for cy, cx in [(64, 64), (65, 65), (66, 67), (67, 66)]:
            y = x.clone()
            y[0, :, cy, cx] += 500
            rows, cols = ((unet(y) - base)[0, 0] != 0).nonzero(as_tuple=True)
            reach = max(reach, (rows - cy).abs().max().item(), (cols - cx).abs().max().item())
    assert reach < UNET_REACH


def test_segment_volume_rejects_a_bad_box():
    volume = torch.zeros(4, 8, 8, dtype=torch.int16)
    for bad in [(0, 4, 0, 8, 0), (0, 5, 0, 8, 0, 8), (2, 2, 0, 8, 0, 8), (0, 4, -1, 8, 0, 8), (0, 4, 0, 8, 0, 8.5),
                "box"]:
        with pytest.raises(ValueError, match="box"):
            segment_volume(volume, LowestContextSlice(), box=bad)


# --- the analysis with and without the lung region --------------------------------------


class DenseInLung(nn.Module):
    """Segmentation oracle shaped like a trained U-Net: marks voxels of the middle slice denser than
    -300 HU with lung-like voxels (-930..-500 HU) around them (nodules, vessels, the pleura's edge),
    from a 15x15 neighbourhood zero-padded at the input's edges (as the U-Net's convolutions)."""

    def forward(self, x):
        mid = x[:, 3:4]
        lung = ((mid > -930) & (mid < -500)).float()
        share = F.avg_pool2d(lung, 15, stride=1, padding=7, count_include_pad=True)
        return ((mid > -300) & (share > 0.3)).float()


class CenterDensity(nn.Module):
    def forward(self, x):
        center = x[:, 0, x.shape[2] // 2, x.shape[3] // 2, x.shape[4] // 2]
        p = torch.sigmoid(center / 100.0)
        probs = torch.stack([1 - p, p], dim=1)
        return probs.log(), probs


def test_the_lung_region_finds_the_detections_of_the_whole_scan(small_root):
    scan, nodules = _scans_with_nodules(small_root)[0]  # 4 nodules
    bundle = ModelBundle(seg=DenseInLung(), cls=CenterDensity(), mal=CenterDensity(), device=torch.device("cpu"))
    lever = analyze_scan(scan, bundle, AnalysisConfig(seg_batch_size=8))
    whole = analyze_scan(scan, bundle, AnalysisConfig(seg_batch_size=8, lung_region=False))
    assert lever.lung_region is not None and lever.lung_region.found and lever.lung_region.fraction < 0.75
    assert whole.lung_region is None and "lung_region" in lever.seconds and "lung_region" not in whole.seconds
    got, want = lever.to_json(), whole.to_json()
    assert got["lung_region"] == lever.lung_region.to_json() and want["lung_region"] is None
    assert len(want["detections"]) >= 10 and got["detections"] == want["detections"]
    # not vacuous: every annotated nodule is among the detections
    centers = np.array([d.center_irc for d in lever.detections])
    spacing = scan.geometry.spacing[::-1]
    for center, radius_mm in nodules:
        assert (np.abs(centers - center) * spacing).max(axis=1).min() < radius_mm, center


def test_analyze_records_the_box_and_whole_scan_turns_it_off(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    torch.manual_seed(0)
    torch.save(UNetWrapper().state_dict(), models / "seg.pt")
    torch.save(LunaModel().state_dict(), models / "cls.pt")
    mhd = write_scan(tmp_path / "1.2.3.chest.mhd", _chest(), spacing=CHEST_SPACING[::-1])
    reports = {}
    for flag in ([], ["--whole-scan"]):
        out = tmp_path / ("whole" if flag else "lungs")
        assert torchlite_main(["analyze", "--models", str(models), "--ct", str(mhd), "--out", str(out),
                               "--views", "0", "--no-progress", "--device", "cpu", "--threshold", "0.999",
                               *flag]) == 0
        reports[bool(flag)] = json.loads((out / "report.json").read_text())
    lungs, whole = reports[False], reports[True]
    assert lungs["config"]["lung_region"] is True and whole["config"]["lung_region"] is False
    region = lungs["scans"][0]["lung_region"]
    assert region["found"] is True and region["fraction"] < 1.0
    assert region["box_irc"] == lung_box(_chest(), CHEST_SPACING).to_json()["box_irc"]
    assert whole["scans"][0]["lung_region"] is None
