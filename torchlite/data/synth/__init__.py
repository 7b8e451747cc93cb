"""Synthetic LUNA16: chest phantoms with vessels, airways and nodules, in LUNA16's on-disk format.

``generate_dataset(out_dir, n_scans, seed)`` writes ``subset*/<uid>.mhd/.raw``,
``candidates.csv``, ``annotations.csv`` and the book's
``annotations_with_malignancy.csv``, deterministically for a seed; the
statistics (diameters, nodules per scan, malignancy against diameter,
candidates per scan) are those of the real annotations (see stats.py).
``torchlite synth`` is its command line (command.py).
"""

from __future__ import annotations

import logging
import operator
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from torchlite.data.synth import writer
from torchlite.data.synth.scan import SIZES, generate_scan, scan_uid

log = logging.getLogger(__name__)

LUNA16_SUBSETS = 10


@dataclass(frozen=True)
class SynthSummary:
    out_dir: Path
    size: str
    seed: int
    n_scans: int
    n_subsets: int
    n_nodules: int
    n_malignant: int
    n_candidates: int
    n_positive_candidates: int
    n_flipped: int  # scans whose direction matrix flips an axis
    n_without_nodules: int
    seconds: float

    def __str__(self) -> str:
        return (f"{self.n_scans} {self.size} scans in {self.n_subsets} subsets under {self.out_dir}: "
                f"{self.n_nodules} nodules ({self.n_malignant} malignant), {self.n_candidates} candidates "
                f"({self.n_positive_candidates} class 1), {self.n_flipped} scans with flipped axes, "
                f"{self.n_without_nodules} without nodules; {self.seconds:.1f} s")


def _integer(name: str, value, minimum: int) -> int:
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)
    except TypeError:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}") from None
    if number < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}")
    return number


def _existing(out: Path) -> list[Path]:
    found = sorted(out.glob("subset*/*.mhd")) + sorted(out.glob("subset*/*.raw"))
    return found + [out / name for name in writer.CSV_FILES if (out / name).exists()]


def generate_dataset(out_dir, n_scans: int, seed: int, size: str = "small", n_subsets: int | None = None, *,
                     overwrite: bool = False, progress: bool = True) -> SynthSummary:
    """Write a synthetic LUNA16 dataset of `n_scans` scans under `out_dir`.

    `size` "small" (at most 128 x 192 x 192, for tests) or "full" (512 x 512,
    ~300 mm of slices). Scans go round-robin into ``subset0 ..
    subset{n_subsets-1}`` (default: LUNA16's 10, or one per scan if fewer).
    An `out_dir` that already holds scans or CSVs is refused unless
    `overwrite`, which first deletes those (and only those) files. The CSVs
    are written last, so they never name a scan that is not on disk.
    """
    n_scans = _integer("n_scans", n_scans, 1)
    seed = _integer("seed", seed, 0)
    if size not in SIZES:
        raise ValueError(f"`size` must be one of {SIZES}, got {size!r}")
    n_subsets = _integer("n_subsets", min(LUNA16_SUBSETS, n_scans) if n_subsets is None else n_subsets, 1)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"`out_dir` {out} exists and is not a folder")
    old = _existing(out) if out.exists() else []
    if old and not overwrite:
        raise FileExistsError(f"{out} already holds a LUNA16 dataset ({old[0].name}, ...): "
                              "choose an empty folder or pass overwrite=True (--overwrite)")
    for path in old:
        path.unlink()
    out.mkdir(parents=True, exist_ok=True)

    log.info("writing %d %s scans (seed %d) to %s", n_scans, size, seed, out)
    t0 = time.perf_counter()
    uids: set[str] = set()
    candidates, annotations, malignancy = [], [], []
    n_nodules = n_malignant = n_flipped = n_empty = 0
    for index in tqdm(range(n_scans), desc="synth", unit="scan", disable=not progress or n_scans < 2):
        attempt, uid = 0, scan_uid(seed, index)
        while uid in uids:  # 30 random digits: never in practice, but a duplicate would merge two series
            attempt += 1
            uid = scan_uid(seed, index, attempt)
        uids.add(uid)
        scan = generate_scan(seed, index, size, uid)
        writer.write_scan(scan.volume, scan.spec, out / f"subset{index % n_subsets}")
        candidates += writer.candidate_rows(uid, scan.candidates_xyz, scan.candidates_class)
        for n, xyz in zip(scan.nodules, scan.nodules_xyz):
            annotations.append(writer.annotation_row(uid, xyz, n.diameter))
            malignancy.append(writer.malignancy_row(uid, xyz, n.diameter, n.ratings, *n.bbox_world))
            n_malignant += n.malignant
        n_nodules += len(scan.nodules)
        n_flipped += scan.spec.direction_kind != "identity"
        n_empty += not scan.nodules
        log.debug("wrote %s (%d nodules)", uid, len(scan.nodules))

    by_uid = lambda row: row[0]  # noqa: E731  (LUNA16's CSVs are grouped by series)
    writer.write_csv(out / "candidates.csv", writer.CANDIDATES_COLUMNS, sorted(candidates, key=by_uid))
    writer.write_csv(out / "annotations.csv", writer.ANNOTATIONS_COLUMNS, sorted(annotations, key=by_uid))
    writer.write_csv(out / "annotations_with_malignancy.csv", writer.MALIGNANCY_COLUMNS, malignancy)
    summary = SynthSummary(
        out_dir=out, size=size, seed=seed, n_scans=n_scans, n_subsets=min(n_subsets, n_scans),
        n_nodules=n_nodules, n_malignant=n_malignant, n_candidates=len(candidates),
        n_positive_candidates=sum(int(r[-1]) for r in candidates), n_flipped=n_flipped,
        n_without_nodules=n_empty, seconds=time.perf_counter() - t0,
    )
    log.debug("synth: %s", summary)
    return summary


__all__ = ["SynthSummary", "generate_dataset"]
