"""One small synthetic LUNA16 set per test session, shared by the training tests.

Written once under pytest's session temp dir (a second module asking for it
finds it there), 20 small scans (seed 0): 37 nodules (16 malignant), 749 candidates (39 class 1).
"""

from __future__ import annotations

import json
from pathlib import Path

TRAIN_SCANS = 20
TRAIN_SEED = 0


def train_data_root(tmp_path_factory) -> Path:
    from torchlite.data.synth import generate_dataset

    root = tmp_path_factory.getbasetemp() / "train_synth"
    if not (root / "candidates.csv").is_file():
        generate_dataset(root, TRAIN_SCANS, seed=TRAIN_SEED, size="small", overwrite=True, progress=False)
    return root


def train(args: list[str]) -> int:
    from torchlite.cli import main

    return main(["train", *args])


def read_metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


# Options every training test uses: in-process loading, no bar, no TensorBoard.
QUIET = ["--num-workers", "0", "--no-progress", "--no-tb"]
