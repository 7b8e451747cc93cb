"""The whole-scan pipeline against phantoms whose nodules are known.

The models are oracles with the real models' interfaces (a U-Net that marks
dense voxels of its middle slice, classifiers that read the crop's center),
so every detection's position is checked against where the phantom put its
spheres, in patient millimetres through a flipped direction matrix.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch
import torch.nn as nn

from torchlite.analysis.bundle import BundleError, ModelBundle, load_bundle, load_model
from torchlite.analysis.grouping import estimate_diameter_mm, group_voxels
from torchlite.analysis.pipeline import AnalysisConfig, analyze_scan
from torchlite.analysis.segment import context_indices, segment_volume, slices_with_context
from torchlite.data.geometry import Geometry
from torchlite.data.scan import CtScan
from torchlite.models import LunaModel, UNetWrapper


class DenseMiddleSlice(nn.Module):
    """Segmentation oracle: 1 where the middle context slice is denser than -400 HU."""

    def forward(self, x):
        return (x[:, 3:4] > -400).float()


class CenterDensity(nn.Module):
    """Classifier oracle: P(class 1) = 0.9 when the crop's center voxel is denser than ``hu``, else 0.1."""

    def __init__(self, hu: float) -> None:
        super().__init__()
        self.hu = hu

    def forward(self, x):
        center = x[:, 0, x.shape[2] // 2, x.shape[3] // 2, x.shape[4] // 2]
        p = torch.where(center > self.hu, 0.9, 0.1)
        probs = torch.stack([1 - p, p], dim=1)
        return probs.log(), probs


def _oracle_bundle(mal=True) -> ModelBundle:
    return ModelBundle(seg=DenseMiddleSlice(), cls=CenterDensity(-400), mal=CenterDensity(150) if mal else None,
                       device=torch.device("cpu"))


SPHERES_IRC = [((10, 20, 30), 4, 100), ((25, 40, 15), 3, 300), ((30, 12, 50), 5, 100)]  # center, radius, HU


def _phantom(shape=(40, 56, 64)) -> np.ndarray:
    volume = np.full(shape, -1000, dtype=np.int16)
    grid = np.indices(shape)
    for center, radius, hu in SPHERES_IRC:
        inside = sum((g - c) ** 2 for g, c in zip(grid, center)) <= radius ** 2
        volume[inside] = hu
    volume[5, 5, 5] = 500  # a lone voxel: the erosion removes it
    return volume


@pytest.fixture(scope="module")
def phantom_scan(tmp_path_factory):
    folder = tmp_path_factory.mktemp("phantom")
    image = sitk.GetImageFromArray(_phantom())
    image.SetSpacing((0.8, 0.7, 2.0))
    image.SetOrigin((-100.0, 50.0, -300.0))
    image.SetDirection((-1, 0, 0, 0, 1, 0, 0, 0, -1))  # x and z flipped, as some scanners write
    path = folder / "1.2.3.phantom.mhd"
    sitk.WriteImage(image, str(path))
    return path


def test_context_indices_clamp_at_the_scan_ends():
    idx = context_indices(0, 2, 5)
    assert idx.tolist() == [[0, 0, 0, 0, 1, 2, 3], [0, 0, 0, 1, 2, 3, 4]]
    assert context_indices(4, 5, 5).tolist() == [[1, 2, 3, 4, 4, 4, 4]]


def test_slices_with_context_stacks_clipped_neighbours():
    volume = torch.arange(4 * 3 * 2, dtype=torch.int16).reshape(4, 3, 2) * 200 - 2000
    got = slices_with_context(volume, 1, 3)
    for b, i in enumerate((1, 2)):
        for k, j in enumerate(range(i - 3, i + 4)):
            expected = volume[min(max(j, 0), 3)].float().clamp(-1000, 1000)
            assert torch.equal(got[b, k], expected)


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_segment_volume_covers_every_slice_once(batch_size):
    volume = torch.from_numpy(_phantom())
    prob = segment_volume(volume, DenseMiddleSlice(), batch_size=batch_size)
    assert torch.equal(prob, (volume > -400).float())


@pytest.mark.parametrize("side", [(16, 16), (18, 13)])
def test_segment_volume_runs_the_real_unet_on_any_slice_size(side):
    # the U-Net's output shrinks unless H and W are multiples of 4: padded with air, then cropped
    volume = torch.randint(-1000, 1000, (3, *side), dtype=torch.int16)
    unet = UNetWrapper().eval()
    prob = segment_volume(volume, unet, batch_size=2, channels_last=False)  # the layout of `expected`
    assert prob.shape == (3, *side) and bool(((prob >= 0) & (prob <= 1)).all())
    padded = torch.nn.functional.pad(volume, (0, -side[1] % 4, 0, -side[0] % 4), value=-1000)
    with torch.no_grad():
        expected = unet(slices_with_context(padded, 0, 3))[:, 0, :side[0], :side[1]]
    # batches of 2 vs 3 slices pick different conv algorithms: float noise, amplified by untrained BatchNorm
    torch.testing.assert_close(prob, expected, atol=1e-3, rtol=1e-3)


def test_segment_volume_rejects_bad_input():
    with pytest.raises(ValueError, match="volume"):
        segment_volume(torch.zeros(4, 4), DenseMiddleSlice())
    with pytest.raises(ValueError, match="batch_size"):
        segment_volume(torch.zeros(2, 4, 4), DenseMiddleSlice(), batch_size=0)


def test_group_voxels_finds_the_spheres_and_erodes_specks():
    volume = _phantom()
    groups = group_voxels((volume > -400).astype(np.float32), volume, (2.0, 0.7, 0.8))
    centers = sorted(tuple(np.round(g.center_irc, 6)) for g in groups)
    assert centers == sorted(tuple(float(v) for v in c) for c, _, _ in SPHERES_IRC)


def test_group_voxels_uses_face_connectivity_and_hu_weights():
    hu = np.full((5, 9, 9), -1000, dtype=np.int16)
    prob = np.zeros(hu.shape, dtype=np.float32)
    prob[1:4, 1:4, 1:4] = 1  # a 3x3x3 cube: in-plane erosion leaves its middle column of 3 voxels
    prob[1:4, 4:7, 4:7] = 1  # touches the first only along an edge -> separate after erosion anyway
    groups = group_voxels(prob, hu, (1, 1, 1))
    assert [g.voxels for g in groups] == [3, 3]
    # without erosion the two cubes share an edge (not a face): still two groups
    groups = group_voxels(prob, hu, (1, 1, 1), erosion=0)
    assert [g.voxels for g in groups] == [27, 27]
    # weights: HU + 1001 after clipping to [-1000, 1000]
    prob = np.zeros((1, 1, 3), dtype=np.float32)
    prob[0, 0, :2] = 1
    hu = np.array([[[-1000, 2000, 0]]], dtype=np.int16)  # weights 1 and 2001 (clipped)
    (g,) = group_voxels(prob, hu, (1, 1, 1), erosion=0)
    assert g.center_irc[2] == pytest.approx(2001 / 2002)


def test_erosion_is_in_plane_so_one_slice_nodules_survive():
    hu = np.full((3, 9, 9), -1000, dtype=np.int16)
    prob = np.zeros(hu.shape, dtype=np.float32)
    prob[1, 2:7, 2:7] = 1  # a 5x5 disc on one slice: a 3D erosion would delete it
    prob[1, 0, :] = 1  # a one-voxel-wide line: the erosion removes it
    (g,) = group_voxels(prob, hu, (2.5, 0.7, 0.7))
    assert g.voxels == 9 and tuple(g.center_irc) == (1.0, 4.0, 4.0)


def test_estimate_diameter_of_a_sphere():
    # a 10 mm sphere eroded by one 1 mm voxel is an 8 mm sphere: 268 voxels of 1 mm^3
    voxels = round(4 / 3 * np.pi * 4 ** 3)
    assert estimate_diameter_mm(voxels, np.ones(3)) == pytest.approx(10.0, abs=0.05)


def test_analyze_scan_places_detections_in_patient_space(phantom_scan):
    scan = CtScan(phantom_scan)
    result = analyze_scan(scan, _oracle_bundle(), AnalysisConfig(seg_batch_size=7))
    geometry = Geometry(origin=(-100.0, 50.0, -300.0), spacing=(0.8, 0.7, 2.0),
                        direction=np.diag([-1.0, 1.0, -1.0]), shape=scan.shape)
    expected = {tuple(np.round(geometry.irc_to_xyz(np.array(c, float)), 4)): hu for c, _, hu in SPHERES_IRC}
    got = {tuple(np.round(d.center_xyz, 4)): d for d in result.detections}
    assert set(got) == set(expected)
    for xyz, hu in expected.items():
        assert got[xyz].probability == pytest.approx(0.9)
        assert got[xyz].malignancy == pytest.approx(0.9 if hu > 150 else 0.1)
    assert [d.probability for d in result.detections] == sorted((d.probability for d in result.detections),
                                                                reverse=True)
    assert set(result.seconds) >= {"segment", "group", "classify", "malignancy", "total"}
    json.dumps(result.to_json())


def test_a_scan_where_segmentation_finds_nothing_has_no_detections(tmp_path):
    path = tmp_path / "empty.mhd"
    sitk.WriteImage(sitk.GetImageFromArray(np.full((8, 16, 16), -1000, dtype=np.int16)), str(path))
    result = analyze_scan(CtScan(path), _oracle_bundle(mal=False))
    assert result.detections == []


def test_load_bundle_reads_checkpoints_and_state_dicts(tmp_path):
    seg, cls = UNetWrapper(), LunaModel()
    torch.save({"task": "seg", "model": seg.state_dict(), "epoch": 3}, tmp_path / "seg.pt")
    torch.save(cls.state_dict(), tmp_path / "cls.pt")
    bundle = load_bundle(tmp_path)
    assert bundle.mal is None and bundle.info["seg"]["epoch"] == 3
    for a, b in zip(bundle.cls.state_dict().values(), cls.state_dict().values()):
        assert torch.equal(a, b)


def test_load_bundle_errors_name_the_file(tmp_path):
    with pytest.raises(BundleError, match="no seg"):
        load_bundle(None)
    with pytest.raises(BundleError, match="seg.pt: no such seg model file"):
        load_bundle(tmp_path)
    (tmp_path / "seg.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(BundleError, match="seg.pt: not a torch checkpoint"):
        load_model(tmp_path / "seg.pt", "seg")
    torch.save({"task": "cls", "model": LunaModel().state_dict()}, tmp_path / "x.pt")
    with pytest.raises(BundleError, match="holds a 'cls' model, expected 'seg'"):
        load_model(tmp_path / "x.pt", "seg")
    torch.save(LunaModel().state_dict(), tmp_path / "y.pt")
    with pytest.raises(BundleError, match="y.pt: not a seg model's weights"):
        load_model(tmp_path / "y.pt", "seg")
