"""`torchlite export`: the trained models as TorchScript files and AOTInductor packages, with a manifest.

    torchlite export --models runs/demo/models                       # both formats, into MODELS/exported
    torchlite export --models M --out deploy --format aoti --device cuda

Writes ``<task>.ts.pt`` and/or ``<task>.pt2`` for seg, cls and mal (mal when
the bundle has it), then ``manifest.json`` last: a manifest names only files
that were completely written and checked. Each exported file is loaded back
and run on an input of a size it was not traced/compiled on; the largest
difference from the eager model goes into the manifest.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)

FORMATS = {"torchscript": ".ts.pt", "aoti": ".pt2"}  # format -> file suffix after the task name
CHECK_TOLERANCE = 1e-4  # beyond this an export is reported as a mismatch (tests hold it to 1e-5)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from torchlite.analysis.model_arguments import add_model_arguments

    add_model_arguments(p)
    p.add_argument("--out", metavar="DIR", default=None, help="output folder (default: MODELS/exported)")
    p.add_argument("--format", default="torchscript,aoti", metavar="LIST",
                   help=f"comma-separated, from: {', '.join(FORMATS)}")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="device the models are traced and compiled for (AOTInductor packages run on that device only)")


def parse_formats(text: str) -> list[str]:
    formats = [f.strip().lower() for f in text.split(",") if f.strip()]
    if not formats:
        raise ValueError("--format: no format given (choose from " + ", ".join(FORMATS) + ")")
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"--format: unknown format {unknown[0]!r} (choose from {', '.join(FORMATS)})")
    return list(dict.fromkeys(formats))  # in the order given, once each


def _check(model, exported, iface) -> tuple[float, bool]:
    """Largest absolute difference between ``exported`` and the eager ``model`` on an input size neither
    was traced/compiled on, and whether every output is within CHECK_TOLERANCE (absolute and relative:
    logits of tens differ by a few float32 ulps between kernels)."""
    import torch

    device = next(model.parameters()).device
    x = iface.example_input(seed=2, shape=iface.other_shape()).to(device)
    with torch.no_grad():
        want, got = model(x), exported(x)
    want = want if isinstance(want, tuple) else (want,)
    got = tuple(got) if isinstance(got, (tuple, list)) else (got,)
    if len(want) != len(got) or any(w.shape != g.shape for w, g in zip(want, got)):
        return float("inf"), False
    diff = max(float((w - g).abs().max()) for w, g in zip(want, got))
    ok = all(torch.allclose(g, w, rtol=CHECK_TOLERANCE, atol=CHECK_TOLERANCE) for w, g in zip(want, got))
    return diff, ok


def _validate(args: argparse.Namespace) -> tuple[list[str], Path]:
    import torch

    formats = parse_formats(args.format)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: this torch has no CUDA device (it is built for "
                         f"{'CUDA' if torch.version.cuda else 'CPU only'})")
    if args.models is not None and not Path(args.models).is_dir():
        raise ValueError(f"--models {args.models}: no such folder")
    if args.out is None and args.models is None:
        raise ValueError("--out: required when the models are given one by one (--seg/--cls/--mal)")
    out = Path(args.out) if args.out is not None else Path(args.models) / "exported"
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a folder")
    return formats, out


def run(args: argparse.Namespace) -> int:
    import torch

    from torchlite.analysis.bundle import BundleError, load_bundle
    from torchlite.export.aoti import export_aoti, load_aoti
    from torchlite.export.manifest import MANIFEST_NAME, build_manifest, model_interface, write_manifest
    from torchlite.export.torchscript import export_torchscript

    try:
        formats, out = _validate(args)
        bundle = load_bundle(args.models, seg=args.seg, cls=args.cls, mal=args.mal, device=args.device)
        models = {task: m for task, m in (("seg", bundle.seg), ("cls", bundle.cls), ("mal", bundle.mal))
                  if m is not None}
        interfaces = {task: model_interface(task, m) for task, m in models.items()}
    except (ValueError, BundleError) as e:
        log.error("%s", e)
        return 2

    if "torchscript" in formats:  # Python hides DeprecationWarnings outside __main__: say it once here
        log.info("TorchScript is deprecated upstream (torch.jit.* raise DeprecationWarning); it is exported for "
                 "LibTorch programs that load it. The AOTInductor package (--format aoti) is its successor.")
    out.mkdir(parents=True, exist_ok=True)
    # A manifest from an earlier export would describe files this one is replacing: it goes first, and
    # the new one is written last, so a manifest always describes a complete, checked set.
    (out / MANIFEST_NAME).unlink(missing_ok=True)
    exporters = {"torchscript": (export_torchscript, lambda path: torch.jit.load(str(path), map_location=args.device)),
                 "aoti": (export_aoti, load_aoti)}
    files: dict[str, dict[str, str]] = {task: {} for task in models}
    checks: dict[str, dict[str, float]] = {task: {} for task in models}
    seconds: dict[str, float] = {}
    mismatches = []
    for fmt in formats:
        export, load = exporters[fmt]
        for task, model in models.items():
            path = out / f"{task}{FORMATS[fmt]}"
            started = time.perf_counter()
            try:
                export(model, interfaces[task], path, device=args.device)
            except Exception as e:  # compiler missing, export refusing an op: name the model and format
                log.error("%s: %s export failed: %s: %s", task, fmt, type(e).__name__, e)
                return 1
            seconds[f"{task}.{fmt}"] = round(time.perf_counter() - started, 2)
            diff, ok = _check(model, load(path), interfaces[task])
            files[task][fmt] = path.name
            checks[task][fmt] = diff
            if not ok:
                mismatches.append(f"{path.name} (max difference {diff:.3g})")
            log.info("%s %s: %.1f s, max difference from eager %.3g", task, fmt, seconds[f"{task}.{fmt}"], diff)

    if mismatches:  # no manifest: the C++ side must not pick these files up
        log.error("exported outputs differ from the eager models by more than %g: %s; no %s written",
                  CHECK_TOLERANCE, ", ".join(mismatches), MANIFEST_NAME)
        return 1
    sources = {task: dict(info, max_abs_difference_from_eager=checks[task])
               for task, info in bundle.info.items() if task in models}
    manifest = build_manifest(interfaces=interfaces, files=files, device=args.device, formats=formats,
                              sources=sources)
    manifest["export_seconds"] = seconds
    write_manifest(out / MANIFEST_NAME, manifest)
    print(f"exported {', '.join(models)} as {', '.join(formats)} in {sum(seconds.values()):.1f} s: "
          f"{out}/ ({MANIFEST_NAME})")
    return 0
