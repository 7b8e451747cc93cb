"""The command-line options that say where the models are (torch-free, so
`torchlite --help` does not import torch)."""

from __future__ import annotations

import argparse


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--models DIR`` and ``--seg/--cls/--mal FILE``: how every command that
    runs the models (analyze, export, serve) is told where they are."""
    models = parser.add_argument_group("models")
    models.add_argument("--models", metavar="DIR", default=None, help="a folder holding seg.pt, cls.pt and mal.pt")
    models.add_argument("--seg", metavar="CKPT", default=None, help="segmentation checkpoint (overrides --models)")
    models.add_argument("--cls", metavar="CKPT", default=None, help="nodule classifier checkpoint")
    models.add_argument("--mal", metavar="CKPT", default=None, help="malignancy checkpoint (optional)")
