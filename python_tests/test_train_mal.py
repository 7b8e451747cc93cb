"""`torchlite train mal`, fine-tuned from a nodule classifier checkpoint."""

import pytest
import torch
from _train_fixture import QUIET, train, train_data_root

TINY = ["--epoch-samples", "16", "--batch-size", "8", "--val-stride", "4", *QUIET]


@pytest.fixture(scope="module")
def cls_ckpt(tmp_path_factory):
    root = train_data_root(tmp_path_factory)
    out = tmp_path_factory.mktemp("cls")
    assert train(["cls", "--data", str(root), "--out", str(out), "--epoch-samples", "8", "--batch-size", "8",
                  "--val-stride", "16", *QUIET]) == 0
    return root, out / "last.pt"


@pytest.mark.parametrize("depth,trained", [(1, {"head_linear"}), (2, {"head_linear", "block4"})])
def test_finetune_trains_only_the_last_blocks(cls_ckpt, tmp_path, depth, trained):
    root, ckpt = cls_ckpt
    out = tmp_path / "mal"
    assert train(["mal", "--data", str(root), "--out", str(out), "--finetune", str(ckpt),
                  "--finetune-depth", str(depth), *TINY]) == 0
    before = torch.load(ckpt, weights_only=False)["model"]
    after = torch.load(out / "last.pt", weights_only=False)
    assert after["args"]["lr"] == 0.003
    for key, value in after["model"].items():
        block = key.split(".")[0]
        if "running" in key or "num_batches" in key:
            continue  # BatchNorm statistics follow the data in train mode, as in the book
        if block in trained:
            assert not torch.equal(value, before[key]), key
        else:
            assert torch.equal(value, before[key]), key
    m = after["metrics"]
    assert 0.0 <= m["val"]["auc"] <= 1.0 and m["val"]["n_pos"] > 0


def test_finetune_depth_out_of_range_is_refused(cls_ckpt, tmp_path):
    root, ckpt = cls_ckpt
    assert train(["mal", "--data", str(root), "--out", str(tmp_path), "--finetune", str(ckpt),
                  "--finetune-depth", "9", *TINY]) == 2
