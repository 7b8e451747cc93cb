"""AOTInductor export: ``torch.export`` then ``aoti_compile_and_package`` (``<task>.pt2``).

The path PyTorch recommends today for running a model without Python:
``torch.export`` captures the whole graph with symbolic shapes, Inductor
generates and compiles C++ (CPU) or Triton/CUDA kernels ahead of time, and
the ``.pt2`` package loads in Python (``torch._inductor.aoti_load_package``)
or C++ (``torch::inductor::AOTIModelPackageLoader``). A package is built for
one device: CPU here, CUDA with ``--device cuda`` where torch has CUDA.

Dynamic dimensions are declared, not guessed: the batch of every model, and
the U-Net's height and width as multiples of its stride (``4 * h``), which
is the size rule of the model itself (see ``manifest.unet_stride``).
Compiling costs tens of seconds per model on a small machine: a C++
compiler must be on the PATH.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import torch
import torch.nn as nn
from torch.export import Dim

from torchlite.export.manifest import ModelInterface

log = logging.getLogger(__name__)


def dynamic_shapes(iface: ModelInterface) -> dict:
    """``torch.export`` dynamic_shapes for ``iface``'s one input."""
    dims = {}
    for dim, name in iface.dynamic.items():
        multiple = iface.multiple_of.get(dim, 1)
        limit = iface.maximum[dim]
        if multiple == 1:
            dims[dim] = Dim(name, min=1, max=limit)
        else:  # a derived dimension: torch.export then knows the size divides, and needs no guard for it
            dims[dim] = multiple * Dim(f"{name}_div{multiple}", min=1, max=limit // multiple)
    return {iface.input_name: dims}


@torch.no_grad()
def export_program(model: nn.Module, iface: ModelInterface,
                   device: torch.device | str = "cpu") -> torch.export.ExportedProgram:
    device = torch.device(device)
    model = model.to(device).eval()
    return torch.export.export(model, (iface.example_input().to(device),), dynamic_shapes=dynamic_shapes(iface))


def export_aoti(model: nn.Module, iface: ModelInterface, path: str | os.PathLike,
                device: torch.device | str = "cpu") -> Path:
    """Export and compile ``model`` into the AOTInductor package ``path`` (``.pt2``, atomically)."""
    from torchlite.utils.atomic import atomic_write

    path = Path(path)
    if path.suffix != ".pt2":
        raise ValueError(f"{path}: an AOTInductor package name must end in .pt2")
    started = time.perf_counter()
    program = export_program(model, iface, device)
    with atomic_write(path, "wb") as f:
        torch._inductor.aoti_compile_and_package(program, package_path=f)
    log.info("%s: AOTInductor package for %s written to %s in %.1f s", iface.task, torch.device(device).type,
             path, time.perf_counter() - started)
    return path


def load_aoti(path: str | os.PathLike):
    """The compiled model of a ``.pt2`` package, callable like the eager one."""
    return torch._inductor.aoti_load_package(str(path))
