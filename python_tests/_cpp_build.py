"""Build the C++ targets once per test session (test_cpp_mhd.py, test_cpp_app.py).

CMake into build/cpp, the folder `make cpp` uses, so reruns are incremental;
TORCHLITE_CPP_BUILD names another. Every C++ target the tests drive is built
in one `cmake --build` call the first time a test asks for any of them: the
first build compiles the operator library (~1.5-2 min on 2 cores) and the
programs (~1 min more).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD = Path(os.environ.get("TORCHLITE_CPP_BUILD", ROOT / "build" / "cpp"))
TARGETS = ("torchlite-mhd-info", "fuzz_mhd_header", "torchlite-app")

_outcome: dict[str, object] = {}  # "build": Path, or "skip"/"fail": reason, once per session


def _run(cmd, **kw):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)


def _build() -> Path:
    import torch

    if shutil.which("cmake") is None:
        raise _Skip("cmake is not installed: the C++ programs cannot be built")
    compiler = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if not compiler:
        raise _Skip("no C++ compiler (c++, g++ or clang++) found: the C++ programs cannot be built")
    t0 = time.perf_counter()
    configure = _run(["cmake", "-S", ROOT, "-B", BUILD, "-DCMAKE_BUILD_TYPE=Release",
                      f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}"])
    if configure.returncode != 0:
        raise _Fail(f"cmake configure failed:\n{configure.stdout[-3000:]}\n{configure.stderr[-3000:]}")
    build = _run(["cmake", "--build", BUILD, "--target", *TARGETS, "-j", "2"])
    if build.returncode != 0:
        raise _Fail(f"cmake build failed:\n{build.stdout[-5000:]}\n{build.stderr[-5000:]}")
    print(f"C++ configure + build: {time.perf_counter() - t0:.1f} s")
    return BUILD


class _Skip(Exception):
    pass


class _Fail(Exception):
    pass


def cpp_build_dir() -> Path:
    """The folder holding the built C++ programs; skips (no cmake or compiler) or fails (build error)
    the asking test, and every later one, the same way without building again."""
    if not _outcome:
        try:
            _outcome["build"] = _build()
        except _Skip as e:
            _outcome["skip"] = str(e)
        except _Fail as e:
            _outcome["fail"] = str(e)
    if "skip" in _outcome:
        pytest.skip(_outcome["skip"])
    if "fail" in _outcome:
        pytest.fail(_outcome["fail"])
    return _outcome["build"]
