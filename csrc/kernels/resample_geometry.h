// What one resampling call (affine3d / affine2d / sample_patches3d) reads and
// writes, as the CPU engine (cpu/resample.h) and the CUDA kernels
// (cuda/resample.cuh) both see it. Filled on the host from the tensors by
// sampling_geometry.h.
//
// Source images are (channels, size...) with arbitrary strides; image n's
// source starts at src + n * src_image_stride (0 when every sample reads the
// same scan). The output is contiguous (images, channels, out_size...).
#pragma once

#include "kernels/noise.h"

#include <cstdint>

namespace torchlite {
namespace kernels {

template <int K>
struct ResampleGeometry {
  int64_t images = 0;
  int64_t channels = 1;
  int32_t out_size[K] = {};
  int32_t src_size[K] = {};
  int64_t src_stride[K] = {};
  int64_t src_channel_stride = 0;
  int64_t src_image_stride = 0;
  float pad = 0.f;                     // value of corners outside (zeros/fill)
  float clip_lo = 0.f, clip_hi = 0.f;  // used when the kernel clips on read
  float noise_std = 0.f;
  PhiloxKey key{0, 0};
};

}  // namespace kernels
}  // namespace torchlite
