#!/usr/bin/env bash
# Compile CUDA sources to object files against the installed torch's headers,
# without a GPU or a CUDA build of torch:  tools/nvcc_check.sh csrc/cuda/x.cu ...
# python_tests/test_cuda_sources_compile.py runs the same command on every .cu.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
TI="$("$PY" -c 'import torch.utils.cpp_extension as c; print(" ".join("-I"+p for p in c.include_paths()))')"
ABI="$("$PY" -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))')"
OUT="${OUT:-/tmp/torchlite_nvcc}"
mkdir -p "$OUT"
for f in "$@"; do
  nvcc -c -std=c++20 -O3 $TI -I"$ROOT/csrc" -I"$ROOT/python_tests/cuda_compile_shim" \
    --expt-relaxed-constexpr -D_GLIBCXX_USE_CXX11_ABI="$ABI" -Xcompiler -fPIC \
    -diag-suppress 3306 -o "$OUT/$(basename "$f").o" "$f"
  echo "compiled $f"
done
