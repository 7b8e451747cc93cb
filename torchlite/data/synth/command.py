"""`torchlite synth`: write a synthetic LUNA16 dataset."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write subset*/, candidates.csv, ...")
    p.add_argument("--scans", type=int, default=20, metavar="N", help="number of scans")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="same seed, same bytes")
    p.add_argument("--size", choices=("small", "full"), default="small",
                   help="small: <= 128 x 192 x 192 voxels (tests, demos); full: 512 x 512, ~300 mm of slices")
    p.add_argument("--subsets", type=int, default=None, metavar="K",
                   help="spread scans over subset0..subset{K-1} (default: 10, or one per scan if fewer)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the scans and CSVs of a dataset already in DIR")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from torchlite.data.synth import generate_dataset

    try:
        summary = generate_dataset(args.out, args.scans, args.seed, size=args.size, n_subsets=args.subsets,
                                   overwrite=args.overwrite, progress=not args.no_progress)
    except (ValueError, FileExistsError, NotADirectoryError) as e:
        log.error("%s", e)
        return 2
    print(summary)
    return 0
