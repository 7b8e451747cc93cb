"""--resume continues a run exactly: 2 epochs in one go equal 1 epoch, a
stop, then --resume to 2 epochs (weights, optimizer state, metrics; with
--lr-schedule cosine and --ema also the scheduler's step, the learning rate,
the weight average and its update count)."""

import pytest
import torch
from _train_fixture import QUIET, read_metrics, train, train_data_root

# Augmented (per-sample and per-batch draws), balanced, tiny.
COMMON = ["--epoch-samples", "16", "--batch-size", "8", "--val-stride", "16", "--augmented", *QUIET]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return train_data_root(tmp_path_factory)


# The cosine horizon is the final epoch count (2), fixed when the run starts.
STEADY = ["--lr-schedule", "cosine", "--lr-warmup", "0.5", "--lr-horizon", "2", "--ema", "0.9"]


@pytest.mark.parametrize("task,extra", [("cls", ["--augment-on", "batch"]), ("seg", []),
                                        ("cls", STEADY), ("seg", STEADY)],
                         ids=["cls", "seg", "cls-cosine-ema", "seg-cosine-ema"])
def test_resume_gives_identical_weights(root, tmp_path, task, extra):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert train([task, "--data", str(root), "--out", str(straight), "--epochs", "2", *COMMON, *extra]) == 0
    assert train([task, "--data", str(root), "--out", str(split), "--epochs", "1", *COMMON, *extra]) == 0
    first = torch.load(split / "last.pt", weights_only=False)
    assert first["epoch"] == 1
    assert train([task, "--data", str(root), "--out", str(split), "--epochs", "2", "--resume", *COMMON, *extra]) == 0

    a = torch.load(straight / "last.pt", weights_only=False)
    b = torch.load(split / "last.pt", weights_only=False)
    assert a["epoch"] == b["epoch"] == 2 and a["samples_seen"] == b["samples_seen"] == 32
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert a.keys() == b.keys() and ("ema" in a) == ("--ema" in extra)
    if "ema" in a:
        assert a["ema"] == b["ema"] == {"decay": 0.9, "updates": 4}
        for key, value in a["train_model"].items():
            assert torch.equal(value, b["train_model"][key]), key
        assert not all(torch.equal(v, a["train_model"][k]) for k, v in a["model"].items())
    assert a["scheduler"] == b["scheduler"] and a["scheduler"]["last_epoch"] == 4
    assert a["optimizer"]["param_groups"][0]["lr"] == b["optimizer"]["param_groups"][0]["lr"]
    if "cosine" in extra:
        assert a["optimizer"]["param_groups"][0]["lr"] == 0.0  # decayed to 0 at the horizon
        # After epoch 1: step 2 of 4, 1 of warmup: 0.001 * (1 + cos(pi / 3)) / 2.
        assert first["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.00075)
    # The second epoch changed the weights: the comparison is not of two copies of epoch 1.
    assert any(not torch.equal(v, first["model"][k]) for k, v in a["model"].items() if v.is_floating_point())
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    for i in sa:
        for k in sa[i]:
            assert torch.equal(torch.as_tensor(sa[i][k]), torch.as_tensor(sb[i][k]))
    ma, mb = read_metrics(straight), read_metrics(split)
    assert [m["epoch"] for m in mb] == [1, 2]
    assert [m["train"]["loss"] for m in ma] == [m["train"]["loss"] for m in mb]


def test_resume_refuses_changed_arguments(root, tmp_path):
    out = tmp_path / "run"
    assert train(["cls", "--data", str(root), "--out", str(out), "--epochs", "1", *COMMON]) == 0
    assert train(["cls", "--data", str(root), "--out", str(out), "--epochs", "2", "--resume", "--lr", "0.5",
                  *COMMON]) == 2
    assert torch.load(out / "last.pt", weights_only=False)["epoch"] == 1


def test_resume_of_a_cosine_run_refuses_a_moved_horizon(root, tmp_path):
    """Growing --epochs of a cosine run would change the schedule it was
    trained under: refused unless the horizon was given up front."""
    out = tmp_path / "run"
    assert train(["cls", "--data", str(root), "--out", str(out), "--epochs", "1", "--lr-schedule", "cosine",
                  *COMMON]) == 0
    assert train(["cls", "--data", str(root), "--out", str(out), "--epochs", "2", "--lr-schedule", "cosine",
                  "--resume", *COMMON]) == 2
    assert torch.load(out / "last.pt", weights_only=False)["epoch"] == 1


def test_resume_without_checkpoint_is_an_error(root, tmp_path):
    assert train(["cls", "--data", str(root), "--out", str(tmp_path / "none"), "--resume", *COMMON]) == 2
