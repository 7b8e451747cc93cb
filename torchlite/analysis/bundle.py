"""The three trained models the analysis runs, loaded from checkpoints.

A *model bundle* is a folder holding ``seg.pt``, ``cls.pt`` and ``mal.pt``:
checkpoints as ``torchlite train`` writes them (``best.pt``/``last.pt``,
renamed) or bare state dicts. ``torchlite analyze --models DIR``,
``torchlite serve`` and ``torchlite export`` read it; ``--seg/--cls/--mal``
name files one by one instead. The malignancy model is optional: without
it detections carry no malignancy.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

log = logging.getLogger(__name__)

BUNDLE_FILES = {"seg": "seg.pt", "cls": "cls.pt", "mal": "mal.pt"}


class BundleError(ValueError):
    """A model file is missing or is not the model it should be: names the file."""


@dataclass
class ModelBundle:
    seg: nn.Module
    cls: nn.Module
    mal: nn.Module | None
    device: torch.device
    # per model: path, task, epoch, torchlite version, validation metrics of the checkpoint
    info: dict = field(default_factory=dict)


def _build(task: str) -> nn.Module:
    from torchlite.models import LunaModel, UNetWrapper

    return UNetWrapper() if task == "seg" else LunaModel()


def load_model(path: str | os.PathLike, task: str, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """One model in eval mode on ``device``, and what its checkpoint says of it."""
    path = Path(path)
    if not path.is_file():
        raise BundleError(f"{path}: no such {task} model file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # pickle, zip and torch errors alike: a file that is not a checkpoint
        raise BundleError(f"{path}: not a torch checkpoint ({type(e).__name__}: {e})") from None
    if isinstance(ckpt, dict) and "model" in ckpt:
        saved_task = ckpt.get("task")
        if saved_task is not None and saved_task != task:
            raise BundleError(f"{path}: holds a {saved_task!r} model, expected {task!r}")
        state = ckpt["model"]
        info = {"task": task, "epoch": ckpt.get("epoch"), "samples_seen": ckpt.get("samples_seen"),
                "torchlite_version": ckpt.get("torchlite_version"), "metrics": ckpt.get("metrics", {}).get("val")
                if isinstance(ckpt.get("metrics"), dict) else None}
    elif isinstance(ckpt, dict):
        state, info = ckpt, {"task": task}
    else:
        raise BundleError(f"{path}: expected a checkpoint or a state dict, got {type(ckpt).__name__}")
    model = _build(task)
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError) as e:
        first = str(e).strip().splitlines()[0]
        raise BundleError(f"{path}: not a {task} model's weights: {first}") from None
    info["path"] = str(path)
    return model.to(device).eval(), info


def load_bundle(models_dir: str | os.PathLike | None = None, *, seg=None, cls=None, mal=None,
                device: torch.device | str = "cpu", require_mal: bool = False) -> ModelBundle:
    """The bundle in ``models_dir``; ``seg``/``cls``/``mal`` paths override
    its files one by one. ``mal.pt`` may be absent unless ``require_mal``."""
    device = torch.device(device)
    paths = {"seg": seg, "cls": cls, "mal": mal}
    for task, name in BUNDLE_FILES.items():
        if paths[task] is None and models_dir is not None:
            candidate = Path(models_dir) / name
            if candidate.is_file() or task != "mal" or require_mal:
                paths[task] = candidate
    missing = [t for t in ("seg", "cls") if paths[t] is None]
    if missing:
        raise BundleError(f"no {' and no '.join(missing)} model: pass --models DIR (holding "
                          f"{', '.join(BUNDLE_FILES.values())}) or --{missing[0]} FILE")
    models, info = {}, {}
    for task, path in paths.items():
        if path is None:
            models[task] = None
            continue
        models[task], info[task] = load_model(path, task, device)
        log.info("loaded %s model %s (epoch %s)", task, path, info[task].get("epoch"))
    if models["mal"] is None:
        log.warning("no malignancy model: detections will carry no malignancy")
    return ModelBundle(seg=models["seg"], cls=models["cls"], mal=models["mal"], device=device, info=info)
