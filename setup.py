"""Builds torchlite._C, the operator library, with torch.utils.cpp_extension.

CppExtension by default; CUDAExtension when the installed torch has CUDA and
nvcc is found. TORCHLITE_CUDA=1 forces the CUDA build (and fails loudly if it
cannot be done), TORCHLITE_CUDA=0 forbids it.

Install with `pip install --no-build-isolation -e .` so the build uses the
torch already installed (build isolation would fetch another torch).
"""

import glob
import os

import torch
from setuptools import find_packages, setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

ROOT = os.path.dirname(os.path.abspath(__file__))


def _version() -> str:
    scope: dict = {}
    with open(os.path.join(ROOT, "torchlite", "_version.py")) as f:
        exec(f.read(), scope)
    return scope["__version__"]


def _want_cuda() -> bool:
    flag = os.environ.get("TORCHLITE_CUDA")
    possible = torch.version.cuda is not None and CUDA_HOME is not None
    if flag == "0":
        return False
    if flag == "1":
        if not possible:
            raise RuntimeError(
                "TORCHLITE_CUDA=1 but a CUDA build is impossible here: "
                f"torch.version.cuda={torch.version.cuda!r}, CUDA_HOME={CUDA_HOME!r}. "
                "Install a CUDA build of torch and the CUDA toolkit (nvcc)."
            )
        return True
    if flag not in (None, ""):
        raise RuntimeError(f"TORCHLITE_CUDA must be 0 or 1, got {flag!r}")
    return possible


def _extension():
    # Relative paths: setuptools rejects absolute source paths in a wheel build.
    # autograd/ holds C++ autograd kernels (device-independent), cpu/ the
    # CPU kernels, memory/ the CPU kernels' output cache; all plain C++, in
    # every build.
    cpu_sources = ["csrc/torchlite.cpp", "csrc/python_module.cpp"] + sorted(
        glob.glob("csrc/autograd/*.cpp", root_dir=ROOT)
        + glob.glob("csrc/cpu/*.cpp", root_dir=ROOT)
        + glob.glob("csrc/memory/*.cpp", root_dir=ROOT)
    )
    # -fopenmp on compile *and* link: without it at::parallel_for runs on one thread.
    cxx_flags = ["-O3", "-fopenmp", "-fdiagnostics-color=always"]
    link_flags = ["-fopenmp"]
    if _want_cuda():
        cuda_sources = sorted(glob.glob("csrc/cuda/*.cu", root_dir=ROOT))
        return CUDAExtension(
            "torchlite._C",
            cpu_sources + cuda_sources,
            extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "--use_fast_math"]},
            extra_link_args=link_flags,
            include_dirs=[os.path.join(ROOT, "csrc")],
        )
    return CppExtension(
        "torchlite._C",
        cpu_sources,
        extra_compile_args={"cxx": cxx_flags},
        extra_link_args=link_flags,
        include_dirs=[os.path.join(ROOT, "csrc")],
    )


setup(
    version=_version(),
    packages=find_packages(include=["torchlite", "torchlite.*"]),
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExtension},
)
