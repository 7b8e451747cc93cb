"""`torchlite export`: TorchScript and AOTInductor files compute what the eager models compute, and
the manifest carries the analysis pipeline's own constants.

The models are the real architectures with random weights whose BatchNorm
statistics are measured on HU-range inputs, as training leaves them (with
the untouched statistics mean 0 / variance 1, HU values of 1000 blow the
activations up and every comparison is about float32 rounding of huge numbers).
AOTInductor compiles C++ (tens of seconds per model): the default run
compiles seg and cls once, for the whole module; the malignancy package,
the same architecture as cls, is compiled only with TORCHLITE_SLOW_TESTS=1.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import shutil

import numpy as np
import pytest
import torch
import torch.nn as nn

from _calibrated_models import calibrated, random_hu
from torchlite.analysis.classify import positive_probability
from torchlite.analysis.grouping import FACE_CONNECTIVITY, IN_PLANE
from torchlite.analysis.pipeline import AnalysisConfig
from torchlite.analysis.segment import CONTEXT, segment_volume
from torchlite.data.datasets.patch_dataset import AIR_HU, HU_CLIP, PATCH_SIZE
from torchlite.export import command
from torchlite.export.aoti import load_aoti
from torchlite.models import LunaModel, UNetWrapper

slow = pytest.mark.skipif(not os.environ.get("TORCHLITE_SLOW_TESTS"), reason="set TORCHLITE_SLOW_TESTS=1")
ATOL = 1e-5  # the bound: exported outputs equal eager outputs
# Whole pipeline stages, where the eager model runs channels_last and an AOTI package contiguous:
# the eager model's own float32 noise between those layouts is ~2e-5 (see _assert_as_exact_as_eager).
STAGE_ATOL = 1e-4


@pytest.fixture(scope="module")
def eager():
    torch.manual_seed(0)
    return {"seg": calibrated(UNetWrapper(), (4, 2 * CONTEXT + 1, 64, 64), 100),
            "cls": calibrated(LunaModel(), (4, 1, *PATCH_SIZE), 200),
            "mal": calibrated(LunaModel(), (4, 1, *PATCH_SIZE), 300)}


def _bundle(folder, eager, tasks):
    folder.mkdir(parents=True, exist_ok=True)
    for task in tasks:  # the checkpoint layout `torchlite train` writes
        torch.save({"task": task, "model": eager[task].state_dict(), "epoch": 3}, folder / f"{task}.pt")
    return folder


def _run(*argv) -> int:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return command.run(parser.parse_args([str(a) for a in argv]))


@pytest.fixture(scope="module")
def ts_dir(tmp_path_factory, eager):
    models = _bundle(tmp_path_factory.mktemp("ts") / "models", eager, ("seg", "cls", "mal"))
    assert _run("--models", models, "--format", "torchscript") == 0
    return models / "exported"  # the default --out


@pytest.fixture(scope="module")
def aoti_dir(tmp_path_factory, eager):
    models = _bundle(tmp_path_factory.mktemp("aoti") / "models", eager, ("seg", "cls"))  # no mal: optional
    out = tmp_path_factory.mktemp("aoti") / "out"
    assert _run("--models", models, "--out", out, "--format", "aoti") == 0
    return out


def _manifest(folder):
    return json.loads((folder / "manifest.json").read_text())


def _outputs(y) -> tuple:
    return tuple(y) if isinstance(y, (tuple, list)) else (y,)


def _assert_as_exact_as_eager(model: nn.Module, exported, x: torch.Tensor, fed: torch.Tensor | None = None):
    """``exported`` adds at most ATOL of error (relative to the output's scale, at least 1) to what
    the eager float32 model computes, measured against the same model in float64 (the truth both
    approximate).

    Comparing float32 to float32 at 1e-5 is not meaningful here: the eager model on a
    channels_last copy of its input already differs from itself by ~1.6e-5 on 512x512 slices
    (other oneDNN kernels, another summation order); the float64 reference separates that noise
    from an export error."""
    with torch.no_grad():
        want = _outputs(model(x))
        got = _outputs(exported(x if fed is None else fed))
        truth = _outputs(copy.deepcopy(model).double()(x.double()))
    assert len(got) == len(want)
    for w, g, t in zip(want, got, truth):
        assert g.shape == w.shape and g.dtype == torch.float32
        # Errors relative to the output's scale: probabilities are <= 1 (so absolute), logits tens.
        scale = max(1.0, t.abs().max().item())
        eager_error = (w.double() - t).abs().max().item() / scale
        assert (g.double() - t).abs().max().item() / scale <= eager_error + ATOL


SEG_SHAPES = [(2, 176, 176), (1, 192, 176), (1, 512, 512)]  # synthetic scans are 160-192 on a side, LUNA16 512


@pytest.mark.parametrize("n,h,w", SEG_SHAPES)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_torchscript_seg_matches_eager_at_any_allowed_size_and_layout(ts_dir, eager, n, h, w, layout):
    model = torch.jit.load(str(ts_dir / "seg.ts.pt"))
    x = random_hu((n, 2 * CONTEXT + 1, h, w), seed=h + w)
    fed = x.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else x
    _assert_as_exact_as_eager(eager["seg"], model, x, fed)


@pytest.mark.parametrize("task", ["cls", "mal"])
@pytest.mark.parametrize("n", [1, 5])
def test_torchscript_classifiers_match_eager(ts_dir, eager, task, n):
    model = torch.jit.load(str(ts_dir / f"{task}.ts.pt"))
    x = random_hu((n, 1, *PATCH_SIZE), seed=n)
    _assert_as_exact_as_eager(eager[task], model, x)


@pytest.mark.parametrize("n,h,w", SEG_SHAPES)
def test_aoti_seg_matches_eager_at_any_allowed_size(aoti_dir, eager, n, h, w):
    model = load_aoti(aoti_dir / "seg.pt2")
    x = random_hu((n, 2 * CONTEXT + 1, h, w), seed=h * w)
    _assert_as_exact_as_eager(eager["seg"], model, x)


@pytest.mark.parametrize("n", [1, 5])
def test_aoti_cls_matches_eager(aoti_dir, eager, n):
    model = load_aoti(aoti_dir / "cls.pt2")
    x = random_hu((n, 1, *PATCH_SIZE), seed=10 + n)
    _assert_as_exact_as_eager(eager["cls"], model, x)


@slow
def test_aoti_mal_matches_eager(tmp_path, eager):
    from torchlite.export.aoti import export_aoti
    from torchlite.export.manifest import model_interface

    path = export_aoti(eager["mal"], model_interface("mal", eager["mal"]), tmp_path / "mal.pt2")
    x = random_hu((5, 1, *PATCH_SIZE), seed=7)
    _assert_as_exact_as_eager(eager["mal"], load_aoti(path), x)


def test_pipeline_stages_give_the_same_numbers_with_exported_models(ts_dir, aoti_dir, eager):
    """What analyze_scan computes, through the exported files: per-voxel probabilities of a scan and
    nodule probabilities of crops. AOTI packages get contiguous input, as the manifest says."""
    volume = random_hu((9, 64, 80), seed=5).round().to(torch.int16)
    want = segment_volume(volume, eager["seg"], batch_size=4)
    got_ts = segment_volume(volume, torch.jit.load(str(ts_dir / "seg.ts.pt")), batch_size=4)
    got_aoti = segment_volume(volume, load_aoti(aoti_dir / "seg.pt2"), batch_size=4, channels_last=False)
    assert (got_ts - want).abs().max() <= STAGE_ATOL and (got_aoti - want).abs().max() <= STAGE_ATOL

    crops = random_hu((7, 1, *PATCH_SIZE), seed=6)
    want = positive_probability(eager["cls"], crops, batch_size=4)
    for exported in (torch.jit.load(str(ts_dir / "cls.ts.pt")), load_aoti(aoti_dir / "cls.pt2")):
        assert (positive_probability(exported, crops, batch_size=4) - want).abs().max() <= STAGE_ATOL


def test_manifest_output_rule_picks_the_softmax_probability_of_class_1(ts_dir):
    """manifest 'use' for cls: output 1, index 1 — that is softmax(logits)[:, 1], the nodule probability."""
    use = _manifest(ts_dir)["models"]["cls"]["use"]
    logits, probs = torch.jit.load(str(ts_dir / "cls.ts.pt"))(random_hu((3, 1, *PATCH_SIZE), seed=9))
    outputs = (logits, probs)
    torch.testing.assert_close(outputs[use["output"]][:, use["index"]], torch.softmax(logits, 1)[:, 1])


def test_manifest_carries_the_pipeline_constants(ts_dir, aoti_dir):
    m = _manifest(ts_dir)
    assert m["format_version"] == 1
    from torchlite import __version__

    assert m["torchlite_version"] == __version__ and m["torch_version"] == torch.__version__
    assert m["device"] == "cpu" and m["dtype"] == "float32" and m["formats"] == ["torchscript"]
    p = m["pipeline"]
    assert p["hu_clip"] == list(HU_CLIP)
    assert p["segmentation"]["context_slices"] == CONTEXT and p["segmentation"]["channels"] == 2 * CONTEXT + 1
    assert p["segmentation"]["batch_size"] == 1  # a CPU export: one slice a call is fastest there
    config = AnalysisConfig()
    assert p["grouping"]["threshold"] == config.threshold and p["grouping"]["erosion_iterations"] == config.erosion
    assert p["crop"]["size_irc"] == list(PATCH_SIZE) and p["crop"]["fill_hu"] == AIR_HU
    assert p["crop"]["clip"] == list(HU_CLIP)
    assert np.array_equal(p["grouping"]["erosion_structure"], IN_PLANE)
    assert np.array_equal(p["grouping"]["labelling_structure"], FACE_CONNECTIVITY)
    assert p["grouping"]["center_of_mass_weight"]["offset"] == 1001.0

    seg, cls = m["models"]["seg"], m["models"]["cls"]
    assert seg["files"] == {"torchscript": "seg.ts.pt"} and m["models"]["mal"]["files"] == {"torchscript": "mal.ts.pt"}
    assert seg["input"]["shape"] == [-1, 2 * CONTEXT + 1, -1, -1]
    assert seg["input"]["dynamic"] == {"0": "batch", "2": "height", "3": "width"}
    assert min(seg["input"]["maximum"]["2"], seg["input"]["maximum"]["3"]) >= 512  # a LUNA16 slice
    assert cls["input"]["shape"] == [-1, 1, *PATCH_SIZE] and cls["input"]["dynamic"] == {"0": "batch"}
    assert seg["use"] == {"output": 0, "channel": 0} and cls["use"] == {"output": 1, "index": 1}
    assert seg["source"]["epoch"] == 3

    a = _manifest(aoti_dir)
    assert a["formats"] == ["aoti"] and set(a["models"]) == {"seg", "cls"}  # no mal.pt in that bundle
    assert a["models"]["seg"]["files"] == {"aoti": "seg.pt2"} and a["models"]["cls"]["files"] == {"aoti": "cls.pt2"}
    assert sorted(p.name for p in aoti_dir.iterdir()) == ["cls.pt2", "manifest.json", "seg.pt2"]  # no leftovers


def test_structures_are_the_documented_rules(ts_dir):
    """Independent of grouping.py: the in-plane erosion is a 2D cross in the middle slice, the
    labelling the 6 face neighbours of a voxel (and itself)."""
    g = _manifest(ts_dir)["pipeline"]["grouping"]
    cross = np.zeros((3, 3, 3), dtype=int)
    cross[1] = [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    faces = np.zeros((3, 3, 3), dtype=int)
    for axis in range(3):
        for side in (0, 2):
            index = [1, 1, 1]
            index[axis] = side
            faces[tuple(index)] = 1
    faces[1, 1, 1] = 1
    assert g["erosion_structure"] == cross.tolist() and g["labelling_structure"] == faces.tolist()


def test_seg_size_rule_in_the_manifest_is_the_models(ts_dir, eager):
    """The U-Net pools twice by 2: on sizes that are multiples of 4 its output has the input's size;
    on others it is smaller (floored), so the pipeline's rule is a multiple of 4."""
    rule = _manifest(ts_dir)["models"]["seg"]["input"]["multiple_of"]
    assert rule == {"2": 4, "3": 4}
    with torch.no_grad():
        assert eager["seg"](random_hu((1, 7, 132, 44), 1)).shape[-2:] == (132, 44)
        assert eager["seg"](random_hu((1, 7, 130, 131), 1)).shape[-2:] == (128, 128)


def test_bad_input_exits_2_with_a_message(tmp_path, caplog):
    caplog.set_level(logging.ERROR)
    assert _run("--models", tmp_path / "nowhere") == 2
    assert "--models" in caplog.text and "nowhere" in caplog.text
    caplog.clear()
    assert _run("--models", tmp_path, "--format", "torchscript,onnx") == 2
    assert "'onnx'" in caplog.text and "torchscript, aoti" in caplog.text
    caplog.clear()
    assert _run("--models", tmp_path) == 2  # a folder without seg.pt
    assert "seg" in caplog.text
    if not torch.cuda.is_available():
        caplog.clear()
        assert _run("--models", tmp_path, "--device", "cuda") == 2
        assert "--device cuda" in caplog.text


def test_a_failed_export_leaves_no_file_and_no_stale_manifest(tmp_path, eager, monkeypatch):
    models = _bundle(tmp_path / "models", eager, ("seg", "cls"))
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text("{}")  # from an earlier export
    import torchlite.export.torchscript as ts

    monkeypatch.setattr(ts, "trace_and_freeze", lambda *a, **k: torch.jit.script(nn.Identity()))

    def half_save(module, f):
        f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(torch.jit, "save", half_save)
    assert _run("--models", models, "--out", out, "--format", "torchscript") == 1
    assert list(out.iterdir()) == []
