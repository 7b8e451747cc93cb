"""The dataset every command falls back on when given no ``--data``: a
synthetic LUNA16 folder under ``$TORCHLITE_CACHE`` (default
``~/.cache/torchlite``), generated on first use."""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_SYNTH_SCANS = 20


def default_data_dir() -> Path:
    base = os.environ.get("TORCHLITE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "torchlite")
    return Path(base) / f"synth-small-{DEFAULT_SYNTH_SCANS}"


def ensure_default_dataset(*, progress: bool = True) -> Path:
    """The default dataset's folder, written first if it is not there yet."""
    root = default_data_dir()
    if not (root / "candidates.csv").is_file():
        from torchlite.data.synth import generate_dataset

        log.info("no --data: writing the synthetic default dataset to %s", root)
        generate_dataset(root, DEFAULT_SYNTH_SCANS, seed=0, size="small", overwrite=True, progress=progress)
    return root


def resolve_data_dir(data: str | os.PathLike | None, *, create: bool = True, progress: bool = True) -> Path:
    """``--data`` if given, else the default dataset (generated when
    ``create``; otherwise only its path)."""
    if data is not None:
        return Path(data)
    return ensure_default_dataset(progress=progress) if create else default_data_dir()
