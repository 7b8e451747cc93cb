"""Training must learn (issue 4, item 6): each model, trained for a short
budget on a small synthetic set, beats chance on the held-back (validation)
series: cls F1 > 0.7, seg Dice > 0.3, mal ROC AUC > 0.7.

Data: 60 small synthetic scans (seed 0), every 4th series held back: 15
validation series with 586 candidates (22 nodule candidates), 18 annotated
nodules (4 malignant); never trained on. Asserted: the best validation
value over the run's epochs (what selects ``best.pt``), as ``torchlite
train`` computes and logs it.

Budgets and options (torch pinned to 2 threads):
- cls: 12 x 1,000 samples, batch 8, Adam 1e-3, flips, ``--lr-schedule
  cosine``, ``--ema 0.99`` (validation and best.pt use the weight
  average), ``--val-threshold prior``: F1 counts a validation candidate as
  a nodule when its probability means posterior > 0.5 at the training
  series' natural ratio (85 nodules : 1,486 non-nodules, trained 1:1, so
  p > 0.946), a threshold from training counts only, no validation label;
- seg: 20 x 2,000 samples, the book's Adam 1e-3 and batch 16, ``--ema
  0.99`` (no cosine: it made seg worse, see below);
- mal: fine-tuned from this cls run's best.pt (last 2 blocks, the demo's
  depth), 2 x 1,000 samples, the book's defaults.

Measured (60-scan set above, this 2-core machine; best validation value,
the epoch it was reached / epochs, per training seed and torch threads):

  seed thr | cls F1 (prior thr.)  | seg Dice          | mal AUC
  0    2   | 0.842 E12/12         | 0.478 E20/20      | 0.786 E1/2
  1    1   | 0.872 E10/12         | 0.466 E20/20      | 0.929 E1/2 (*)
  2    1   | 0.850 E7/12          | 0.444 E18/20      | 0.857 E1/2 (*)
  0    1   | not measured (time)  | not measured     | not measured
  1, 2 2   | not measured (time)  | not measured     | not measured
(seed 0 at 2 threads: this file under pytest; the other rows: `torchlite
train` with the same arguments, 1 thread. seg seed 0 at 2 threads: >= 0.37
from epoch 10.)

cls reaches its level late for seed 0 (F1 0 for epochs 1-5: no candidate
above 0.946 yet), then stays there: 0.81-0.84 from epoch 9 (seed 0),
0.81-0.87 from epoch 6 (seed 1), 0.84-0.85 from epoch 7 (seed 2). Without
these options (the draft's book setting: constant lr, no average, F1 at
0.5) the best F1 was 0.723-0.842, swinging 0.4-0.84 between epochs; the
average alone gave seed 2 0.745, the average with cosine 0.783 at 0.5.
seg's Dice still moves between epochs (0.17-0.47 after epoch 14), the
average lifts the late epochs (seed 2, 14 epochs: best 0.349 -> 0.406) and
20 epochs give every seed several chances; cosine decay made seg worse
(seed 2, 16 epochs: 0.287) and is not used for it. (*) mal from a cls
best.pt chosen by F1 at 0.5 (the run predates --val-threshold), epoch 9
(seed 1) / 12 (seed 2) instead of 10 / 7.
Runtime at 2 threads: not measured quiet (the machine was shared; the
measured run took 2,138 s with pauses). From its undisturbed epochs: cls
12.3-13.4 s an epoch (~155 s), seg 6.4-7.0 s (~135 s), mal ~10 s, plus
generating the 60 scans (~25 s): ~5.5 min estimated.
"""

from __future__ import annotations

import os

import pytest
import torch
from _train_fixture import QUIET, read_metrics, train

SCANS, DATA_SEED, VAL_STRIDE = 60, 0, 4
# The budgets were measured for training seeds 0-2 at 1 and 2 threads (table
# above); these variables re-measure a row. A bigger machine runs 2 threads.
SEED = int(os.environ.get("TORCHLITE_LEARN_SEED", "0"))
THREADS = int(os.environ.get("TORCHLITE_LEARN_THREADS", "2"))

COMMON = ["--val-stride", str(VAL_STRIDE), "--seed", str(SEED), "--device", "cpu", *QUIET]
STEADY = ["--lr-schedule", "cosine", "--ema", "0.99"]
CLS = ["--epochs", "12", "--epoch-samples", "1000", "--batch-size", "8", "--optimizer", "adam", "--lr", "0.001",
       "--augment-flip", "--val-threshold", "prior", *STEADY]
SEG = ["--epochs", "20", "--epoch-samples", "2000", "--ema", "0.99"]
MAL = ["--epochs", "2", "--epoch-samples", "1000", "--finetune-depth", "2"]


@pytest.fixture(scope="module", autouse=True)
def pinned_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from torchlite.data.synth import generate_dataset

    root = tmp_path_factory.mktemp("learn_synth")
    generate_dataset(root, SCANS, seed=DATA_SEED, size="small", overwrite=True, progress=False)
    return root


@pytest.fixture(scope="module")
def cls_run(data, tmp_path_factory):
    """The nodule classifier, trained once: its own test, and mal's starting point."""
    out = tmp_path_factory.mktemp("cls")
    assert train(["cls", "--data", str(data), "--out", str(out), *CLS, *COMMON]) == 0
    return out


def best(out, key: str) -> tuple[float, list[float]]:
    values = [m["val"][key] for m in read_metrics(out)]
    print(f"{out.name} best val {key} {max(values):.3f} at epoch {values.index(max(values)) + 1}: "
          f"{[round(v, 3) for v in values]}")
    return max(values), [round(v, 3) for v in values]


def test_nodule_classifier_learns(cls_run):
    lines = read_metrics(cls_run)
    assert all(m["val"]["n"] == 586 and m["val"]["n_pos"] == 22 for m in lines)  # the held-back series
    assert all(0.94 < m["val"]["threshold"] < 0.95 for m in lines)  # from the training counts
    value, per_epoch = best(cls_run, "f1")
    assert value > 0.7, per_epoch


def test_segmentation_learns(data, tmp_path):
    out = tmp_path / "seg"
    assert train(["seg", "--data", str(data), "--out", str(out), *SEG, *COMMON]) == 0
    value, per_epoch = best(out, "dice")
    assert value > 0.3, per_epoch


def test_malignancy_learns(data, cls_run, tmp_path):
    out = tmp_path / "mal"
    assert train(["mal", "--data", str(data), "--out", str(out), "--finetune", str(cls_run / "best.pt"), *MAL,
                  *COMMON]) == 0
    value, per_epoch = best(out, "auc")
    assert value > 0.7, per_epoch
