"""Build a development copy of the operator library from a subset of kernels.

    python tools/devbuild.py NAME csrc/cpu/crop3d.cpp [more sources...]

compiles csrc/torchlite.cpp (all schemas), csrc/memory/ (the kernels' output
cache, which the schema file registers) plus the given kernel sources into
/tmp/torchlite_dev/NAME/NAME.so and prints that path. Point the package at it
with TORCHLITE_LIBRARY=<path> to test kernels without rebuilding (or
breaking) the whole extension; operators whose kernels were left out still
have their schemas, so fake/autograd registration works for all of them.
"""

import os
import sys

from torch.utils.cpp_extension import load

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv):
    if len(argv) < 1:
        sys.exit(__doc__)
    name, sources = argv[0], argv[1:]
    build_dir = os.path.join("/tmp/torchlite_dev", name)
    os.makedirs(build_dir, exist_ok=True)
    load(
        name=name,
        sources=[os.path.join(ROOT, "csrc/torchlite.cpp"), os.path.join(ROOT, "csrc/memory/output_pool.cpp")]
        + [os.path.join(ROOT, s) for s in sources],
        extra_include_paths=[os.path.join(ROOT, "csrc")],
        extra_cflags=["-O3", "-fopenmp"],
        extra_ldflags=["-fopenmp"],
        build_directory=build_dir,
        is_python_module=False,
        verbose=False,
    )
    print(os.path.join(build_dir, f"{name}.so"))


if __name__ == "__main__":
    main(sys.argv[1:])
