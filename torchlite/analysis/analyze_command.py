"""`torchlite analyze`: whole scans in, a LUNA16 submission CSV, a JSON
report and PNG views out.

    torchlite analyze --models runs/demo/models --data DIR            # the validation series
    torchlite analyze --models M --data DIR --series UID [UID ...]
    torchlite analyze --models M --ct scan.mhd [scan2.mhd ...]       # scans in no CSV

Writes ``OUT/detections.csv`` (``seriesuid,coordX,coordY,coordZ,probability,malignancy``:
every group the segmentation finds, so the FROC curve can be drawn),
``OUT/report.json`` (per scan: seconds per stage, the lung region segmented,
detections with diameter, nodule and malignancy probabilities) and
``OUT/views/<uid>_<k>.png`` for the top ``--views`` detections of each scan.
The U-Net runs only on the box holding each scan's lungs unless
``--whole-scan`` (see :mod:`torchlite.analysis.lung_region`).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from tqdm import tqdm

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    what = p.add_argument_group("what to analyze (default: the validation series of --data)")
    what.add_argument("--data", metavar="DIR", default=None,
                      help="LUNA16 folder (default: the synthetic dataset the other commands use)")
    what.add_argument("--series", nargs="+", metavar="UID", default=None, help="series of --data to analyze")
    what.add_argument("--ct", nargs="+", metavar="FILE.mhd", default=None,
                      help="scans to analyze, wherever they are (no CSV needed)")
    what.add_argument("--val-stride", type=int, default=10,
                      help="the validation split of --data: every N-th series (as `torchlite train`)")
    from torchlite.analysis.model_arguments import add_model_arguments

    add_model_arguments(p)
    p.add_argument("--out", metavar="DIR", default="runs/analyze", help="output folder")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available")
    p.add_argument("--batch-size", type=int, default=None,
                   help="slices per segmentation batch (default: 1 on a CPU, measured ~3x faster there than 16; "
                        "16 on a GPU)")
    p.add_argument("--threshold", type=float, default=0.5, help="segmentation probability that marks a voxel")
    p.add_argument("--whole-scan", action="store_true",
                   help="segment every voxel (default: only the box holding the lungs, found per scan; "
                        "the whole scan where none is found)")
    p.add_argument("--views", type=int, default=3, metavar="K", help="PNG views of the top K detections per scan")
    p.add_argument("--cache-dir", metavar="DIR", default=None,
                   help="where scans that cannot be memory-mapped are converted (default: beside the data)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _scan_paths(args: argparse.Namespace) -> dict[str, Path]:
    """series uid -> .mhd path of every scan to analyze."""
    from torchlite.data.discovery import discover_scans
    from torchlite.data.synth.default import resolve_data_dir

    if args.ct:
        if args.series or args.data:
            raise ValueError("--ct names scans directly: use it without --data/--series")
        paths = {}
        for name in args.ct:
            path = Path(name)
            if not path.is_file():
                raise ValueError(f"--ct {name}: no such file")
            if path.stem in paths:
                raise ValueError(f"--ct {name}: series {path.stem} given twice")
            paths[path.stem] = path
        return paths
    root = resolve_data_dir(args.data, progress=not args.no_progress)
    scans = discover_scans(root)
    if args.series:
        missing = [uid for uid in args.series if uid not in scans]
        if missing:
            raise ValueError(f"--series: no scan {missing[0]}.mhd under {root}/subset*/"
                             + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
        return {uid: scans[uid] for uid in args.series}
    from torchlite.data.datasets.split import split_series

    val = split_series(scans, args.val_stride).val
    if not val:
        raise ValueError(f"no validation series under {root} with --val-stride {args.val_stride}")
    return {uid: scans[uid] for uid in val}


def run(args: argparse.Namespace) -> int:
    import torch

    from torchlite import __version__
    from torchlite.analysis.bundle import BundleError, load_bundle
    from torchlite.analysis.detections import Detection, write_detections
    from torchlite.analysis.pipeline import AnalysisConfig, analyze_scan
    from torchlite.analysis.views import write_detection_view
    from torchlite.data.metaimage import ScanError
    from torchlite.data.scan import CtScan
    from torchlite.utils.atomic import atomic_write

    if (args.batch_size is not None and args.batch_size < 1) or args.views < 0 or not 0.0 <= args.threshold < 1.0:
        log.error("--batch-size must be >= 1, --views >= 0, --threshold in [0, 1)")
        return 2
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        paths = _scan_paths(args)
        bundle = load_bundle(args.models, seg=args.seg, cls=args.cls, mal=args.mal, device=device)
    except (ValueError, BundleError, ScanError) as e:
        log.error("%s", e)
        return 2

    out = Path(args.out)
    (out / "views").mkdir(parents=True, exist_ok=True)
    config = AnalysisConfig(threshold=args.threshold, seg_batch_size=args.batch_size, progress=not args.no_progress,
                            lung_region=not args.whole_scan)
    started = time.perf_counter()
    results, errors, detections = [], [], []
    for uid, path in tqdm(paths.items(), desc="scans", unit="scan", disable=args.no_progress):
        try:
            scan = CtScan(path, cache_dir=args.cache_dir)
            result = analyze_scan(scan, bundle, config)
        except (ScanError, OSError) as e:
            log.error("skipping %s: %s", uid, e)
            errors.append({"series_uid": uid, "path": str(path), "error": str(e)})
            continue
        results.append(result)
        detections += [Detection(uid, d.center_xyz, d.probability, d.malignancy, d.diameter_mm)
                       for d in result.detections]
        for k, d in enumerate(result.detections[:args.views]):
            write_detection_view(out / "views" / f"{uid}_{k}.png", scan.tensor.numpy(), result.spacing_xyz, d,
                                 title=f"{uid[-16:]} #{k}")
        log.info("%s: %d detections (%d with nodule probability >= 0.5) in %.1f s", uid, len(result.detections),
                 sum(d.probability >= 0.5 for d in result.detections), result.seconds["total"])

    write_detections(out / "detections.csv", detections)
    report = {"torchlite_version": __version__, "device": str(bundle.device), "models": bundle.info,
              "config": {"threshold": config.threshold, "erosion": config.erosion,
                         "seg_batch_size": config.seg_batch_size_on(bundle.device),
                         "cls_batch_size": config.cls_batch_size_on(bundle.device),
                         "lung_region": config.lung_region},
              "seconds": round(time.perf_counter() - started, 3),
              "scans": [r.to_json() for r in results], "errors": errors}
    with atomic_write(out / "report.json", "w") as f:
        json.dump(report, f, indent=1)
    print(f"{len(results)} scans analyzed, {len(detections)} detections in {report['seconds']:.1f} s: "
          f"{out / 'detections.csv'}, {out / 'report.json'}, {out / 'views'}/")
    if errors:
        print(f"{len(errors)} scans could not be read (see report.json 'errors')")
        return 1
    return 0
