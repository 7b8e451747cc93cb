"""--lr-schedule and --ema: cosine learning rates per step against the
formula, the weight average against a hand computation, their arguments."""

import json
import math

import pytest
import torch
import torch.nn as nn
from _train_fixture import QUIET, train, train_data_root

from torchlite.train.ema import ModelEma, warmed_decay
from torchlite.train.schedule import LrFactor, make_scheduler


def _cosine(base, t, total, warmup):
    if t < warmup:
        return base * (t + 1) / warmup
    if t >= total:
        return 0.0
    return base * 0.5 * (1 + math.cos(math.pi * (t - warmup) / (total - warmup)))


@pytest.mark.parametrize("warmup_epochs", [0, 0.5, 1])
def test_cosine_lr_per_step_follows_the_formula(warmup_epochs):
    steps_per_epoch, horizon, base = 4, 3, 0.1
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=base)
    sched = make_scheduler(opt, "cosine", steps_per_epoch, horizon, warmup_epochs)
    total, warmup = steps_per_epoch * horizon, round(warmup_epochs * steps_per_epoch)
    seen = []
    for t in range(total + 2):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([_cosine(base, t, total, warmup) for t in range(total + 2)], abs=1e-15)
    assert seen[warmup] == pytest.approx(base)  # the peak, right after warmup
    assert seen[total] == 0.0


def test_cosine_by_hand_and_constant():
    f = LrFactor("cosine", total_steps=4)
    assert [f(t) for t in range(5)] == pytest.approx([1.0, (1 + math.cos(math.pi / 4)) / 2, 0.5,
                                                      (1 + math.cos(3 * math.pi / 4)) / 2, 0.0])
    w = LrFactor("cosine", total_steps=6, warmup_steps=2)
    assert [w(t) for t in range(3)] == pytest.approx([0.5, 1.0, 1.0])
    assert all(LrFactor("constant", 10)(t) == 1.0 for t in range(20))
    with pytest.raises(ValueError):
        LrFactor("cosine", total_steps=4, warmup_steps=4)


def test_ema_update_by_hand():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = ModelEma(model, decay=0.5)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    # Update 1: decay min(0.5, 1/10) = 0.1.
    with torch.no_grad():
        model[0].weight.add_(1.0)
    model.train()(torch.randn(4, 2))  # moves the BN running stats and num_batches_tracked
    after1 = {k: v.clone() for k, v in model.state_dict().items()}
    ema.update(model)
    for k, v in ema.module.state_dict().items():
        if v.is_floating_point():
            assert torch.allclose(v, 0.1 * start[k] + 0.9 * after1[k]), k
        else:
            assert torch.equal(v, after1[k]), k  # num_batches_tracked: copied
    # Updates 2..20: decay min(0.5, (1+n)/(10+n)) is 0.5 from n = 8 on.
    expected = {k: v.clone() for k, v in ema.module.state_dict().items()}
    for n in range(1, 20):
        with torch.no_grad():
            model[0].bias.sub_(0.25)
        d = min(0.5, (1 + n) / (10 + n))
        assert warmed_decay(0.5, n) == d
        ema.update(model)
        for k, v in model.state_dict().items():
            expected[k] = d * expected[k] + (1 - d) * v if v.is_floating_point() else v.clone()
    for k, v in ema.module.state_dict().items():
        assert torch.allclose(v, expected[k], atol=1e-6), k
    assert ema.updates == 20 and ema.state_dict() == {"decay": 0.5, "updates": 20}
    # The average is its own copy: no gradients, training the model leaves it alone.
    assert all(not p.requires_grad for p in ema.module.parameters()) and not ema.module.training
    assert ema.module[0].weight.data_ptr() != model[0].weight.data_ptr()


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return train_data_root(tmp_path_factory)


TINY = ["--epoch-samples", "16", "--batch-size", "8", "--val-stride", "16", *QUIET]


@pytest.mark.parametrize("bad", [["--ema", "1.0"], ["--ema", "0"], ["--lr-warmup", "1"], ["--lr-horizon", "3"],
                                 ["--lr-schedule", "cosine", "--lr-warmup", "2"],
                                 ["--lr-schedule", "cosine", "--lr-horizon", "0"]])
def test_bad_schedule_and_ema_arguments_are_refused(root, tmp_path, bad):
    assert train(["cls", "--data", str(root), "--out", str(tmp_path / "run"), "--epochs", "2", *bad, *TINY]) == 2


def test_ema_run_validates_and_checkpoints_the_average(root, tmp_path):
    out = tmp_path / "run"
    assert train(["cls", "--data", str(root), "--out", str(out), "--epochs", "2", "--ema", "0.9",
                  "--lr-schedule", "cosine", *TINY]) == 0
    last = torch.load(out / "last.pt", weights_only=False)
    assert last["ema"] == {"decay": 0.9, "updates": 4}  # 2 epochs x 2 steps
    assert last["scheduler"]["last_epoch"] == 4 and last["optimizer"]["param_groups"][0]["lr"] == 0.0
    moved = [k for k, v in last["model"].items() if v.is_floating_point()
             and not torch.equal(v, last["train_model"][k])]
    assert moved  # "model" is the average, "train_model" the trained weights
    best = torch.load(out / "best.pt", weights_only=False)
    assert best["model"].keys() == last["model"].keys()


def test_val_threshold_prior_uses_training_counts_only(root, tmp_path):
    from torchlite.data.datasets import CandidateDataset
    from torchlite.train.metrics import prior_shift_threshold

    out = tmp_path / "run"
    assert train(["cls", "--data", str(root), "--out", str(out), "--epochs", "1", "--val-threshold", "prior",
                  *TINY]) == 0
    ds = CandidateDataset(root, val_stride=16, ratio=1, epoch_samples=16)
    expected = prior_shift_threshold(len(ds.lists["positive"]), len(ds.lists["negative"]), 1)
    (line,) = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    assert line["val"]["threshold"] == pytest.approx(expected) and 0.9 < expected < 1.0
    assert line["train"]["threshold"] == 0.5  # training batches are balanced


@pytest.mark.parametrize("task,value", [("cls", "1.5"), ("cls", "x"), ("seg", "prior")])
def test_bad_val_threshold_is_refused(root, tmp_path, task, value):
    assert train([task, "--data", str(root), "--out", str(tmp_path / "run"), "--val-threshold", value, *TINY]) == 2
