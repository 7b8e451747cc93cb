// Compile-check shim. A CUDA build of torch ships this generated header; the
// CPU build ships the rest of c10/cuda but not this file, so the nvcc
// compile test (test_cuda_sources_compile.py) supplies the one macro it holds.
// Never on the include path of a real build.
#pragma once
#define C10_CUDA_BUILD_SHARED_LIBS
