"""`torchlite evaluate`: score a detections file against a LUNA16 folder.

    torchlite evaluate --pred runs/analyze/detections.csv --data DIR           # the validation series
    torchlite evaluate --pred P --data DIR --series UID [UID ...]
    torchlite evaluate --pred P --data DIR --all                               # every scan of DIR

Which scans are evaluated matters: the false-positive rate divides by their
number, scans without nodules or without detections included. The default is
the validation split of DIR (every ``--val-stride``-th series of the sorted
uids of the scans on disk: what ``torchlite train`` validates on and
``torchlite analyze`` analyzes by default); ``--series`` names scans,
``--all`` takes every scan of DIR.

Detections of a series with no scan in DIR are an error. So are detections
of a scan outside the evaluated set, by default and with ``--all`` (they
mean the file and the selection do not go together); with ``--series`` they
are left out (logged), so one file can be scored scan by scan.

Reads ``DIR/annotations.csv``, and when present ``annotations_excluded.csv``
(LUNA16's findings that are not scored) and ``annotations_with_malignancy.csv``
(the book's malignancy labels). Prints the sensitivities at 1/8 .. 8 false
positives per scan, CPM, the malignancy AUC of detected nodules and the
book's confusion table; writes ``OUT/evaluation.json`` and ``OUT/froc.png``.
Rules: :mod:`torchlite.analysis.froc`, :mod:`torchlite.analysis.confusion`.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

ANNOTATIONS = "annotations.csv"
EXCLUDED = "annotations_excluded.csv"
MALIGNANCY = "annotations_with_malignancy.csv"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pred", metavar="FILE", required=True,
                   help="detections CSV (seriesuid,coordX,coordY,coordZ,probability[,malignancy])")
    p.add_argument("--data", metavar="DIR", default=None,
                   help="LUNA16 folder; without it, the synthetic dataset the other commands use")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--series", nargs="+", metavar="UID", default=None, help="evaluate these scans of --data")
    which.add_argument("--all", action="store_true", help="evaluate every scan of --data")
    p.add_argument("--val-stride", type=int, default=10,
                   help="the default selection, the validation split: every N-th series (as `torchlite train`)")
    p.add_argument("--out", metavar="DIR", default=None, help="output folder; without it, the folder of --pred")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="nodule probability at or above which a detection counts as a nodule (confusion table)")
    p.add_argument("--mal-threshold", type=float, default=0.5,
                   help="malignancy probability at or above which a nodule is predicted malignant")


def _select_series(args: argparse.Namespace, root: Path, scans: dict) -> tuple[tuple[str, ...], str, str]:
    """(evaluated uids, selection name, what the detections may name: for the error message)."""
    from torchlite.data.datasets.split import split_series

    if args.series:
        missing = [uid for uid in args.series if uid not in scans]
        if missing:
            raise ValueError(f"--series: no scan {missing[0]}.mhd under {root}/subset*/"
                             + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
        return tuple(dict.fromkeys(args.series)), "series", f"the {len(scans)} scans under {root}"
    if args.all:
        return tuple(scans), "all", f"the {len(scans)} scans under {root}"
    val = split_series(scans, args.val_stride).val
    if not val:
        raise ValueError(f"--val-stride {args.val_stride}: no validation series under {root} (use --series or --all)")
    return val, "validation", (f"the {len(val)} validation series of {root} (--val-stride {args.val_stride}; "
                               "use --series or --all to evaluate other scans)")


def _format_report(froc, auc, table) -> str:
    from torchlite.analysis.plots import rate_label

    lines = [f"LUNA16 FROC over {froc.n_scans} scans, {froc.n_nodules} nodules, {froc.n_detections} detections: "
             f"{froc.true_positives} nodules hit, {froc.false_positives} false positives, "
             f"{froc.ignored_duplicates + froc.ignored_excluded} ignored "
             f"({froc.ignored_duplicates} second hits, {froc.ignored_excluded} on excluded findings)"]
    if froc.sensitivities is None:
        lines.append("no nodules in the evaluated scans: sensitivity and CPM are undefined")
    else:
        lines.append(f"{'FPs/scan':<12}" + "".join(f"{rate_label(r):>7}" for r in froc.fp_rates) + f" |{'CPM':>7}")
        lines.append(f"{'sensitivity':<12}" + "".join(f"{s:7.3f}" for s in froc.sensitivities) + f" |{froc.cpm:7.3f}")
        lines.append(f"nodules found by some detection: {froc.true_positives}/{froc.n_nodules} "
                     f"(the curve's highest sensitivity, {froc.max_sensitivity:.3f})")
    detail = f"{auc.n_nodules} detected nodules ({auc.n_malignant} malignant, {auc.n_benign} benign)"
    if auc.n_without_label or auc.n_without_score:
        detail += f"; left out: {auc.n_without_label} without a malignancy label, {auc.n_without_score} without a score"
    lines.append(f"malignancy ROC AUC over {detail}: " + ("n/a (needs both classes)" if auc.auc is None
                                                          else f"{auc.auc:.3f}"))
    lines.append(f"confusion (nodule probability >= {table.threshold:g}, malignancy >= {table.mal_threshold:g}):")
    lines.append(table.format())
    return "\n".join(lines)


def _nodules_json(matching, labels) -> list[dict]:
    out = []
    for nodule, best, label in zip(matching.nodules, matching.best_hit, labels):
        hit = None if best is None else matching.detections[best]
        out.append({"series_uid": nodule.series_uid, "xyz": list(nodule.center_xyz), "diameter_mm": nodule.diameter_mm,
                    "malignant": label, "best_probability": None if hit is None else hit.probability,
                    "best_malignancy": None if hit is None else hit.malignancy})
    return out


def run(args: argparse.Namespace) -> int:
    from torchlite import __version__
    from torchlite.analysis.confusion import confusion_table
    from torchlite.analysis.detections import read_detections
    from torchlite.analysis.froc import froc, malignancy_auc, match_detections, nodule_malignancy
    from torchlite.analysis.plots import write_froc_plot
    from torchlite.data.discovery import discover_scans
    from torchlite.data.luna_csv import read_annotations, read_excluded_annotations, read_malignancy_annotations
    from torchlite.data.synth.default import resolve_data_dir
    from torchlite.utils.atomic import atomic_write

    for name, value in (("--threshold", args.threshold), ("--mal-threshold", args.mal_threshold)):
        if not 0.0 <= value <= 1.0:
            log.error("%s must be in [0, 1], got %s", name, value)
            return 2
    if args.val_stride < 1:
        log.error("--val-stride must be >= 1, got %d", args.val_stride)
        return 2
    pred = Path(args.pred)
    try:
        root = resolve_data_dir(args.data, create=False)
        if not root.is_dir():
            raise ValueError(f"--data: no LUNA16 folder at {root}" + ("" if args.data else " (pass --data DIR)"))
        if not pred.is_file():
            raise ValueError(f"--pred {pred}: no such file")
        if not (root / ANNOTATIONS).is_file():
            raise ValueError(f"--data {root}: no {ANNOTATIONS}")
        scans = discover_scans(root)
        if not scans:
            raise ValueError(f"--data {root}: no subset*/*.mhd scans")
        series, selection, allowed_note = _select_series(args, root, scans)
        allowed = scans if selection == "series" else set(series)
        detections = read_detections(pred, allowed, allowed_note)
        annotations = read_annotations(root / ANNOTATIONS)
        excluded = read_excluded_annotations(root / EXCLUDED) if (root / EXCLUDED).is_file() else None
        malignancy_rows = read_malignancy_annotations(root / MALIGNANCY) if (root / MALIGNANCY).is_file() else []
    except (ValueError, OSError) as e:  # LunaCsvError is a ValueError
        log.error("%s", e)
        return 2

    wanted = set(series)
    if selection == "series":
        left_out = sum(d.series_uid not in wanted for d in detections)
        if left_out:
            log.info("left out %d detections of series not given in --series", left_out)
        detections = [d for d in detections if d.series_uid in wanted]
    silent = len(wanted - {d.series_uid for d in detections})
    if silent:
        log.warning("%d of the %d evaluated scans have no detections (they count: their nodules are missed)",
                    silent, len(series))
    if not malignancy_rows:
        log.warning("no %s in %s: nodules have no malignancy label (no AUC)", MALIGNANCY, root)

    matching = match_detections(detections, annotations, series, excluded or ())
    result = froc(matching)
    labels = nodule_malignancy(matching.nodules, malignancy_rows)
    auc = malignancy_auc(matching, labels)
    table = confusion_table(matching, labels, args.threshold, args.mal_threshold)

    out = Path(args.out) if args.out else pred.parent
    report = {
        "torchlite_version": __version__,
        "predictions": str(pred), "data": str(root),
        "selection": selection, "val_stride": args.val_stride if selection == "validation" else None,
        "series": list(series),
        "excluded_findings_file": None if excluded is None else str(root / EXCLUDED),
        "froc": result.to_json(),
        "malignancy": auc.to_json(),
        "confusion": table.to_json(),
        "nodules": _nodules_json(matching, labels),
    }
    with atomic_write(out / "evaluation.json", "w") as f:
        json.dump(report, f, indent=1)
    write_froc_plot(out / "froc.png", result, title=f"FROC ({selection})")
    print(_format_report(result, auc, table))
    print(f"wrote {out / 'evaluation.json'} and {out / 'froc.png'}")
    return 0
