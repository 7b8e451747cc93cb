// The geometry of a resampling call from its (already checked) tensors, for
// the CPU and CUDA launchers alike (host code only; see sampling_args.h for
// the checks).
#pragma once

#include "kernels/noise.h"
#include "kernels/resample_geometry.h"
#include "kernels/sampling.h"
#include "sampling_args.h"

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace torchlite {
namespace sampling {

// affine3d (K = 3) / affine2d (K = 2): output the size of input (N, C, spatial...).
template <int K>
kernels::ResampleGeometry<K> affine_geometry(const at::Tensor& input, kernels::Padding pad_mode, double fill,
                                             double noise_std, int64_t seed) {
  kernels::ResampleGeometry<K> g;
  g.images = input.size(0);
  g.channels = input.size(1);
  for (int i = 0; i < K; ++i) {
    g.out_size[i] = static_cast<int32_t>(input.size(2 + i));
    g.src_size[i] = g.out_size[i];
    g.src_stride[i] = input.stride(2 + i);
  }
  g.src_channel_stride = input.stride(1);
  g.src_image_stride = input.stride(0);
  g.pad = pad_mode == kernels::Padding::kFill ? static_cast<float>(fill) : 0.f;
  g.noise_std = static_cast<float>(noise_std);
  g.key = kernels::philox_key(seed);
  return g;
}

// sample_patches3d: n patches of `size` (d, h, w) from one volume (D, H, W).
inline kernels::ResampleGeometry<3> patch_geometry(const at::Tensor& volume, int64_t n, at::IntArrayRef size,
                                                   double fill, const Clip& clip, double noise_std, int64_t seed) {
  kernels::ResampleGeometry<3> g;
  g.images = n;
  g.channels = 1;
  for (int i = 0; i < 3; ++i) {
    g.out_size[i] = static_cast<int32_t>(size[i]);
    g.src_size[i] = static_cast<int32_t>(volume.size(i));
    g.src_stride[i] = volume.stride(i);
  }
  g.src_image_stride = 0;  // every patch reads the same scan
  g.pad = static_cast<float>(fill);
  g.clip_lo = clip.lo;
  g.clip_hi = clip.hi;
  g.noise_std = static_cast<float>(noise_std);
  g.key = kernels::philox_key(seed);
  return g;
}

}  // namespace sampling
}  // namespace torchlite
