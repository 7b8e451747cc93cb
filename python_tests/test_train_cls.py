"""`torchlite train cls`: command line, outputs (metrics.jsonl, checkpoints,
TensorBoard) on a tiny run."""

import pytest
import torch
from _train_fixture import QUIET, read_metrics, train, train_data_root

from torchlite import __version__
from torchlite.cli import build_parser

TINY = ["--epoch-samples", "16", "--batch-size", "8", "--val-stride", "16"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return train_data_root(tmp_path_factory)


def test_help_documents_every_option_with_its_default(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    text = capsys.readouterr().out
    for option in ("--data", "--out", "--epochs", "--batch-size", "--num-workers", "--epoch-samples", "--balanced",
                   "--augmented", "--augment-flip", "--augment-offset", "--augment-scale", "--augment-rotate",
                   "--augment-noise", "--lr", "--optimizer", "--finetune", "--finetune-depth", "--device", "--amp",
                   "--seed", "--resume", "--tb", "--memory-format", "--lr-schedule", "--lr-warmup", "--lr-horizon",
                   "--ema", "--val-threshold"):
        assert option in text, option
    assert "0.001" in text and "50000" in text  # the book's cls lr and epoch length


def test_run_writes_metrics_checkpoints_and_tensorboard(root, tmp_path):
    out, tb = tmp_path / "run", tmp_path / "tb"
    assert train(["cls", "--data", str(root), "--out", str(out), "--epochs", "2", "--tb", str(tb), *TINY,
                  "--num-workers", "0", "--no-progress"]) == 0
    lines = read_metrics(out)
    assert [m["epoch"] for m in lines] == [1, 2] and [m["samples_seen"] for m in lines] == [16, 32]
    for m in lines:
        assert m["train"]["n"] == 16 and m["train"]["n_pos"] == 8  # balanced 1:1
        assert m["val"]["n"] > 0
        for key in ("loss", "accuracy_neg", "accuracy_pos", "precision", "recall", "f1", "auc"):
            assert key in m["train"] and key in m["val"]
    last = torch.load(out / "last.pt", weights_only=False)
    assert last["epoch"] == 2 and last["samples_seen"] == 32 and last["task"] == "cls"
    assert last["torchlite_version"] == __version__
    assert last["args"]["lr"] == 0.001 and last["args"]["optimizer"] == "sgd"  # the book's defaults
    assert set(last) >= {"model", "optimizer", "rng", "best"}
    best = torch.load(out / "best.pt", weights_only=False)
    assert best["epoch"] == last["best"]["epoch"]
    assert best["best"]["value"] == max(m["val"]["f1"] for m in lines[: best["epoch"]])
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporaries
    events = list(tb.rglob("events.out.tfevents.*"))
    assert {p.parent.name for p in events} == {"train", "val"}

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb / "val"), size_guidance={"tensors": 0, "histograms": 0})
    acc.Reload()
    assert "cls/f1" in acc.Tags()["scalars"] and "cls/prob_negative" in acc.Tags()["histograms"]
    assert [e.step for e in acc.Scalars("cls/f1")] == [16, 32]


def test_bad_arguments_are_refused(root, tmp_path):
    assert train(["cls", "--data", str(root), "--out", str(tmp_path), "--epochs", "0", *QUIET]) == 2
    assert train(["cls", "--data", str(root), "--out", str(tmp_path), "--finetune", "x.pt", *QUIET]) == 2


@pytest.mark.parametrize(
    "task, fmt, device, expected",
    [
        ("cls", "auto", "cpu", torch.channels_last_3d),
        ("mal", "auto", "cpu", torch.channels_last_3d),
        ("seg", "auto", "cpu", torch.channels_last),
        ("cls", "auto", "cuda", torch.contiguous_format),
        ("seg", "auto", "cuda", torch.contiguous_format),
        ("cls", "channels_last", "cuda", torch.channels_last_3d),
        ("seg", "channels_last", "cuda", torch.channels_last),
        ("cls", "contiguous", "cpu", torch.contiguous_format),
        ("seg", "contiguous", "cpu", torch.contiguous_format),
    ],
)
def test_memory_format_follows_the_flag_and_auto_the_device(task, fmt, device, expected):
    # auto: channels-last where oneDNN runs the models faster (CPU), as analysis and export do;
    # an explicit flag wins on any device. Both model and batches use it.
    from torchlite.train.tasks import make_task

    args = build_parser().parse_args(["train", task, "--data", "x", "--out", "y", "--memory-format", fmt,
                                      "--device", device])
    assert make_task(args).memory_format() == expected
