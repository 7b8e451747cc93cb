// CUDA kernel of sample_patches3d (see csrc/cpu/sample_patches3d.cpp).
#include "cuda/resample.cuh"
#include "sampling_args.h"
#include "sampling_geometry.h"

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

namespace torchlite {
namespace {

using kernels::Padding;

template <typename src_t>
void launch(const cuda::Geometry<3>& g, const cuda::PatchMaps& maps, bool clip, const at::Tensor& volume,
            at::Tensor& out) {
  const src_t* src = volume.const_data_ptr<src_t>();
  float* dst = out.mutable_data_ptr<float>();
  if (clip) {
    cuda::launch_resample<3, Padding::kFill, true>(g, maps, src, dst, out.numel());
  } else {
    cuda::launch_resample<3, Padding::kFill, false>(g, maps, src, dst, out.numel());
  }
}

at::Tensor sample_patches3d_cuda(const at::Tensor& volume, const at::Tensor& centers, const at::Tensor& theta,
                                 at::IntArrayRef size, double fill, c10::optional<at::ArrayRef<double>> clip,
                                 double noise_std, int64_t seed) {
  sampling::check_sample_patches(volume, centers, theta, size, fill, noise_std);
  const sampling::Clip clip_range = sampling::parse_clip("sample_patches3d", clip);
  const c10::cuda::CUDAGuard device_guard(volume.device());
  const int64_t n = centers.size(0);
  auto out = at::empty({n, 1, size[0], size[1], size[2]}, volume.options().dtype(at::kFloat));
  if (out.numel() == 0) return out;

  const cuda::Geometry<3> g = sampling::patch_geometry(volume, n, size, fill, clip_range, noise_std, seed);
  cuda::PatchMaps maps;
  for (int i = 0; i < 3; ++i) maps.size[i] = g.out_size[i];
  const at::Tensor th = theta.to(at::kDouble).contiguous();
  const at::Tensor ct = centers.to(at::kDouble).contiguous();
  maps.theta = th.const_data_ptr<double>();
  maps.centers = ct.const_data_ptr<double>();

  if (volume.scalar_type() == at::kShort) {
    launch<int16_t>(g, maps, clip_range.enabled, volume, out);
  } else {
    launch<float>(g, maps, clip_range.enabled, volume, out);
  }
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(torchlite, CUDA, m) { m.impl("sample_patches3d", &sample_patches3d_cuda); }

}  // namespace torchlite
