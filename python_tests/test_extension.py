"""The compiled operator library: loaded, complete, and built for threads."""

import os
import subprocess

import pytest
import torch

import torchlite.ops
from torchlite.ops import _library

OPS = ["crop3d", "crop3d_out", "affine3d", "affine2d", "sample_patches3d", "dice_loss"]


@pytest.mark.parametrize("op", OPS)
def test_every_operator_has_a_cpu_kernel(op):
    name = f"torchlite::{op}"
    assert torch._C._dispatch_has_kernel_for_dispatch_key(name, "CPU") or torch._C._dispatch_has_kernel_for_dispatch_key(
        name, "CompositeImplicitAutograd"
    ), f"{name} has no CPU (or composite) kernel"


def test_public_names():
    for name in ["crop3d", "affine3d", "affine2d", "sample_patches3d", "dice_loss", "DiceLoss",
                 "RandomAffine3d", "RandomAffine2d"]:
        assert hasattr(torchlite.ops, name), name


@pytest.mark.skipif(bool(os.environ.get("TORCHLITE_LIBRARY")), reason="checks the installed torchlite._C build")
def test_extension_links_openmp():
    # Without -fopenmp at compile and link time, at::parallel_for inside our
    # kernels silently runs on one thread.
    so = _library.load()
    needed = subprocess.run(["readelf", "-d", so], capture_output=True, text=True, check=True).stdout
    assert "libgomp" in needed or "libomp" in needed, f"{so} does not link an OpenMP runtime:\n{needed}"
