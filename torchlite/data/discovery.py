"""Find the scans of a LUNA16 folder: ``<root>/subset*/<seriesuid>.mhd``."""

from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)


def discover_scans(root: str | os.PathLike) -> dict[str, Path]:
    """Series uid -> .mhd path for every scan in the ``subset*`` folders of
    ``root``, in uid order. Only the headers are listed, none is opened.

    A uid found in two subsets is kept once (the first path in sorted order)
    with a warning, so the choice does not depend on the file system's order.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"LUNA16 root {root} is not a directory")
    found: dict[str, Path] = {}
    for subset in sorted(p for p in root.glob("subset*") if p.is_dir()):
        for mhd in sorted(subset.glob("*.mhd")):
            uid = mhd.stem
            if uid in found:
                logger.warning("series %s is in %s and %s; using the first", uid, found[uid], mhd)
                continue
            found[uid] = mhd
    if not found:
        logger.warning("no subset*/*.mhd scans under %s", root)
    return dict(sorted(found.items()))
