import os

import pytest
import torch

from torchlite.utils.atomic import atomic_save_torch, atomic_write


def test_writes_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with atomic_write(target, "w") as f:
        f.write("hello")
    assert target.read_text() == "hello"
    assert os.listdir(target.parent) == ["out.txt"]


def test_failure_keeps_old_content_and_cleans_up(tmp_path):
    target = tmp_path / "ckpt.pt"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_write(target, "wb") as f:
            f.write(b"half a new file")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["ckpt.pt"]


def test_rejects_read_mode(tmp_path):
    with pytest.raises(ValueError, match="write mode"):
        with atomic_write(tmp_path / "x", "rb"):
            pass


def test_atomic_save_torch_roundtrip(tmp_path):
    obj = {"w": torch.arange(5), "epoch": 3}
    atomic_save_torch(obj, tmp_path / "m.pt")
    back = torch.load(tmp_path / "m.pt")
    assert back["epoch"] == 3 and torch.equal(back["w"], obj["w"])


def test_file_mode_follows_the_umask_like_open(tmp_path):
    old = os.umask(0o027)
    try:
        with atomic_write(tmp_path / "a.txt", "w") as f:
            f.write("x")
        with open(tmp_path / "b.txt", "w") as f:
            f.write("x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == (tmp_path / "b.txt").stat().st_mode & 0o777 == 0o640
