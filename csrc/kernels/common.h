// Shared by the CPU (.cpp) and CUDA (.cu) kernels: the per-voxel math is
// written once here, so CPU tests exercise the arithmetic the GPU runs.
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define TL_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define TL_HOST_DEVICE inline
#endif

#include <cstdint>

namespace torchlite {
namespace kernels {

template <typename T>
TL_HOST_DEVICE T tl_min(T a, T b) { return a < b ? a : b; }

template <typename T>
TL_HOST_DEVICE T tl_max(T a, T b) { return a > b ? a : b; }

template <typename T>
TL_HOST_DEVICE T tl_clamp(T v, T lo, T hi) { return tl_min(tl_max(v, lo), hi); }

}  // namespace kernels
}  // namespace torchlite
