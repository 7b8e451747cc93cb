"""`torchlite <command>`: the command-line entry point.

Each command lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; this file only wires them up, importing a command's
module when that command runs so `torchlite --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from torchlite.utils.malloc_policy import keep_freed_memory

# command name -> (module, one-line help)
COMMANDS = {
    "synth": ("torchlite.data.synth.command", "write a synthetic dataset in the LUNA16 on-disk format"),
    "train": ("torchlite.train.command", "train the nodule classifier, segmentation or malignancy model"),
    "analyze": ("torchlite.analysis.analyze_command", "find nodules in whole scans: detections CSV, report, views"),
    "evaluate": ("torchlite.analysis.evaluate_command",
                 "score detections against a LUNA16 folder: FROC/CPM, malignancy AUC, confusion table"),
    "serve": ("torchlite.serve.command", "HTTP service: analyze uploaded scans, classify crops with request batching"),
    "export": ("torchlite.export.command", "export the models as TorchScript and AOTInductor packages for C++"),
    "demo": ("torchlite.demo", "the whole system on synthetic data: synth, train, analyze, evaluate"),
    "bench": ("torchlite.bench.command", "benchmark the operators against their plain-PyTorch references"),
}


def build_parser() -> argparse.ArgumentParser:
    from torchlite import __version__

    parser = argparse.ArgumentParser(
        prog="torchlite",
        description="Lung nodule detection in chest CT with custom PyTorch operators.",
        epilog="environment: TORCHLITE_KEEP_FREED_MEMORY=0 lets the C allocator give freed memory back to the "
               "system (default: kept for reuse, which spares every model call fresh page faults)",
    )
    parser.add_argument("--version", action="version", version=f"torchlite {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        importlib.import_module(module).add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    keep_freed_memory()  # before the command's first large allocation (why: its module)
    return int(importlib.import_module(args._module).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
