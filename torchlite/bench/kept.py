"""Benchmark inputs built once under the temp dir and kept between runs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable


def build_kept_dir(root: Path, build: Callable[[Path], None]) -> None:
    """Build ``root`` whole or not at all: ``build`` fills a private
    ``<root>.partial-<pid>`` folder, which is then renamed to ``root`` (a killed
    run leaves no half-built ``root`` behind). If another process renamed its
    own build into place first, that one is kept and this one dropped."""
    shutil.rmtree(root, ignore_errors=True)
    partial = root.with_name(f"{root.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    build(partial)
    try:
        partial.rename(root)
    except OSError:
        if not root.is_dir():
            raise
        shutil.rmtree(partial, ignore_errors=True)
