"""Finding subset*/<uid>.mhd under a LUNA16 root."""

import logging

import pytest

from torchlite.data.discovery import discover_scans


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    return path


def test_finds_mhd_in_subsets_only(tmp_path):
    a = _touch(tmp_path / "subset0" / "1.2.3.mhd")
    b = _touch(tmp_path / "subset9" / "1.2.1.mhd")
    _touch(tmp_path / "subset0" / "1.2.3.raw")
    _touch(tmp_path / "other" / "9.9.9.mhd")  # not a subset folder
    _touch(tmp_path / "subset0" / "deeper" / "8.8.8.mhd")  # not directly in a subset
    _touch(tmp_path / "top.mhd")
    _touch(tmp_path / "subset5.mhd")  # a file named like a subset
    found = discover_scans(tmp_path)
    assert found == {"1.2.1": b, "1.2.3": a}
    assert list(found) == ["1.2.1", "1.2.3"]  # uid order


def test_duplicate_uid_keeps_the_first_and_warns(tmp_path, caplog):
    first = _touch(tmp_path / "subset0" / "1.2.3.mhd")
    _touch(tmp_path / "subset1" / "1.2.3.mhd")
    with caplog.at_level(logging.WARNING, logger="torchlite.data.discovery"):
        assert discover_scans(tmp_path) == {"1.2.3": first}
    assert any("1.2.3" in m and "subset1" in m for m in caplog.messages)


def test_empty_root_warns_and_missing_root_raises(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="torchlite.data.discovery"):
        assert discover_scans(tmp_path) == {}
    assert any("no subset" in m for m in caplog.messages)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        discover_scans(tmp_path / "nowhere")
