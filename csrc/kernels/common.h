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

// The HU clip on read, for every operator that has one: v clamped to
// [lo, hi] (lo <= hi, checked by the operators), NaN kept as NaN as
// torch.clamp does. Two selects, not a nested one: each compiles to one
// compare + blend, or one max / min, where the nested form compiled to
// scalar branches that mispredict at tissue edges (sample_patches3d's row
// blend: 6 of 35 ms on the book's workload).
TL_HOST_DEVICE float clip_value(float v, float lo, float hi) {
  const float raised = v < lo ? lo : v;
  return raised > hi ? hi : raised;
}

}  // namespace kernels
}  // namespace torchlite
