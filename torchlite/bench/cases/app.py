"""torchlite-app (C++: TorchScript and AOTInductor) against ``torchlite analyze`` (Python).

Issue 6, item 5: seconds per full-size scan on the CPU with the same models,
the C++ program >= 1.2x faster, and its start-up (loading the models) < 1 s.
One synthetic scan (full size: 512 x 512 x ~200 slices; ``--quick`` and the
test suite's smoke run: a small one), untrained models (speed does not
depend on the weights) exported once to TorchScript and AOTInductor, cached
under the temp dir by torch version.

One call = one scan analyzed end to end as a user runs it, both sides on the
lung region with the same box: ``torchlite analyze`` in this process (so the
Python side pays no interpreter start-up; it does load its models each
call), ``torchlite-app`` as a new process (its process start and model
loading included). The app's own start-up figure (its report's
``load_models_seconds``) is a limit of the case.

Needs the C++ program (``make cpp`` -> build/cpp/torchlite-app, or
TORCHLITE_CPP_BUILD) and, for the AOTInductor export, a C++ compiler;
without them the cases are skipped with the reason.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

from torchlite.bench.kept import build_kept_dir
from torchlite.bench.registry import Case, CaseUnavailable, register

GROUP = "torchlite-app vs torchlite analyze: one synthetic scan (full size; --quick: small), CPU"
ANALYZE = "reference: torchlite analyze (Python, in process)"
APP = {"torchscript": "torchlite-app --format torchscript (new process)",
       "aoti": "torchlite-app --format aoti (new process)"}
TARGET_SPEEDUP = 1.2
STARTUP_METRIC = "start-up s (load models)"
TARGET_STARTUP_S = 1.0
# Untrained models mark thousands of noise groups at 0.5, and classifying them would swamp the
# timing (measured: ~180 s per small scan either way); at this threshold a few dozen groups remain,
# as trained models give.
THRESHOLD = "0.999"
_ROOT = Path(__file__).resolve().parents[3]


def app_path() -> Path:
    """Where `make cpp` puts the program (TORCHLITE_CPP_BUILD names another build folder)."""
    return Path(os.environ.get("TORCHLITE_CPP_BUILD", _ROOT / "build" / "cpp")) / "torchlite-app"


@torch.no_grad()
def untrained_bundle(folder: Path) -> None:
    """seg.pt, cls.pt, mal.pt as `torchlite train` writes them, untrained, with BatchNorm statistics of
    HU-range input as training leaves them (with the initial mean 0 / variance 1, activations blow up
    and the export's own check rejects the files)."""
    from torchlite.analysis.segment import CONTEXT
    from torchlite.data.datasets.patch_dataset import HU_CLIP, PATCH_SIZE
    from torchlite.models import LunaModel, UNetWrapper
    from torchlite.utils.atomic import atomic_write

    torch.manual_seed(0)
    for task, model, shape in (("seg", UNetWrapper(), (4, 2 * CONTEXT + 1, 64, 64)),
                               ("cls", LunaModel(), (4, 1, *PATCH_SIZE)), ("mal", LunaModel(), (4, 1, *PATCH_SIZE))):
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.momentum = None  # cumulative average of the batches below
        model.train()
        for _ in range(3):
            model(torch.rand(shape) * (HU_CLIP[1] - HU_CLIP[0]) + HU_CLIP[0])
        with atomic_write(folder / f"{task}.pt", "wb") as f:
            torch.save({"task": task, "model": model.eval().state_dict(), "epoch": 0}, f)


@functools.lru_cache(maxsize=2)
def _prepared(kind: str) -> tuple[Path, Path]:
    """(scan .mhd, models folder with exported/) for "small" or "full", built once and kept."""
    from torchlite.cli import main
    from torchlite.data.synth import generate_dataset

    if shutil.which("c++") is None and shutil.which("g++") is None:
        raise CaseUnavailable("the AOTInductor export needs a C++ compiler (c++ or g++)")
    from torchlite.export.manifest import pipeline_constants

    # Keyed by what the export bakes in: torch's version, the pipeline's constants and the exporters' code.
    key = hashlib.sha1(json.dumps(pipeline_constants("cpu"), sort_keys=True).encode())
    for module in sorted((Path(__file__).resolve().parents[2] / "export").glob("*.py")):
        key.update(module.read_bytes())
    constants = key.hexdigest()[:10]
    root = Path(tempfile.gettempdir()) / "torchlite_bench" / f"app_{kind}_torch{torch.__version__}_{constants}"
    if not (root / "models" / "exported" / "manifest.json").is_file():  # the export writes it last
        def build(partial: Path) -> None:
            generate_dataset(partial / "data", 1, seed=0, size=kind, progress=False)
            (partial / "models").mkdir()
            untrained_bundle(partial / "models")
            if main(["export", "--models", str(partial / "models"), "--format", "torchscript,aoti"]) != 0:
                raise RuntimeError(f"torchlite export failed for the benchmark's models in {partial}")

        build_kept_dir(root, build)
    return next((root / "data").glob("subset*/*.mhd")), root / "models"


def _kind(quick: bool) -> str:
    return "small" if quick else "full"


def _make_analyze(quick: bool, device: str):
    from torchlite.cli import main

    scan, models = _prepared(_kind(quick))
    out = Path(tempfile.mkdtemp(prefix="torchlite_bench_analyze_"))

    def run() -> dict:
        with contextlib.redirect_stdout(io.StringIO()):  # its one-line summary per call would break up the table
            code = main(["analyze", "--models", str(models), "--ct", str(scan), "--out", str(out), "--views", "0",
                         "--no-progress", "--device", "cpu", "--threshold", THRESHOLD])
        if code not in (0, 1):
            raise RuntimeError(f"torchlite analyze exited with {code}")
        return json.loads((out / "report.json").read_text())

    return run


class _AppRun:
    """One call: the program on the scan, as a user runs it; keeps its start-up figure."""

    def __init__(self, app: Path, export: Path, scan: Path, fmt: str) -> None:
        self.out = Path(tempfile.mkdtemp(prefix=f"torchlite_bench_app_{fmt}_"))
        self.cmd = [str(app), "--models", str(export), "--ct", str(scan), "--out", str(self.out / "detections.csv"),
                    "--report", str(self.out / "report.json"), "--format", fmt, "--threshold", THRESHOLD]
        self.startup_s: list[float] = []

    def __call__(self) -> dict:
        done = subprocess.run(self.cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"torchlite-app failed ({done.returncode}): {done.stderr[-2000:]}")
        report = json.loads((self.out / "report.json").read_text())
        self.startup_s.append(report["load_models_seconds"])
        return report

    def bench_metrics(self) -> dict[str, float]:
        return {STARTUP_METRIC: max(self.startup_s)} if self.startup_s else {}


def _make_app(fmt: str):
    def make(quick: bool, device: str):
        app = app_path()
        if not app.is_file():
            raise CaseUnavailable(f"{app} is not built: run `make cpp`")
        scan, models = _prepared(_kind(quick))
        return _AppRun(app, models / "exported", scan, fmt)

    return make


# A full-size call takes 10-20 s and varies little: 5 rounds (+ 2 warm-up calls) per case.
ROUNDS = 5
register(Case(GROUP, ANALYZE, _make_analyze, max_rounds=ROUNDS))
for _fmt, _name in APP.items():
    register(Case(GROUP, _name, _make_app(_fmt), targets={ANALYZE: TARGET_SPEEDUP},
                  limits={STARTUP_METRIC: TARGET_STARTUP_S}, max_rounds=ROUNDS))
