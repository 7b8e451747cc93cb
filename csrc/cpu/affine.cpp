// CPU kernels of affine3d / affine2d: F.affine_grid + F.grid_sample
// (align_corners=False) + Gaussian noise, fused, without a sampling grid.
#include "memory/output_pool.h"
#include "cpu/resample_run.h"
#include "kernels/voxel_map.h"
#include "sampling_args.h"
#include "sampling_geometry.h"

#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <vector>

namespace torchlite {
namespace {

using kernels::Padding;

template <int K, typename scalar_t, Padding P>
TL_CPU_CLONES void affine_items(const cpu::Job<K>& job, const scalar_t* src, scalar_t* out, int64_t i0,
                                int64_t i1) {
  cpu::run_items<K, P, /*Clip=*/false>(job, src, out, i0, i1);
}

template <int K, typename scalar_t, Padding P>
void affine_run(const cpu::Job<K>& job, const scalar_t* src, scalar_t* out) {
  cpu::parallel_items(job, [&](int64_t i0, int64_t i1) { affine_items<K, scalar_t, P>(job, src, out, i0, i1); });
}

template <int K, typename scalar_t>
void dispatch_padding(const cpu::Job<K>& job, Padding pad_mode, const at::Tensor& input, at::Tensor& out) {
  const scalar_t* src = input.const_data_ptr<scalar_t>();
  scalar_t* dst = out.mutable_data_ptr<scalar_t>();
  switch (pad_mode) {
    case Padding::kBorder: affine_run<K, scalar_t, Padding::kBorder>(job, src, dst); break;
    case Padding::kZeros: affine_run<K, scalar_t, Padding::kZeros>(job, src, dst); break;
    case Padding::kFill: affine_run<K, scalar_t, Padding::kFill>(job, src, dst); break;
  }
}

template <int K>
at::Tensor affine_cpu(const char* op, const at::Tensor& input, const at::Tensor& theta, c10::string_view padding,
                      double fill, double noise_std, int64_t seed) {
  sampling::check_affine(op, K, input, theta, fill, noise_std);
  const Padding pad_mode = sampling::parse_padding(op, padding);
  auto out = cpu::empty_output(input.sizes(), input.scalar_type());
  if (out.numel() == 0) return out;

  const auto geometry = sampling::affine_geometry<K>(input, pad_mode, fill, noise_std, seed);
  const at::Tensor th = theta.to(at::kDouble).contiguous();
  const double* th_ptr = th.data_ptr<double>();
  std::vector<kernels::VoxelMap<K>> maps(geometry.images);
  for (int64_t n = 0; n < geometry.images; ++n) {
    maps[n] = kernels::map_from_normalized_theta<K>(th_ptr + n * K * (K + 1), geometry.out_size);
  }
  const cpu::Job<K> job(geometry, maps.data());

  // float32 / float16 / bfloat16 (checked above); the math is float32.
  switch (input.scalar_type()) {
    case at::kHalf: dispatch_padding<K, at::Half>(job, pad_mode, input, out); break;
    case at::kBFloat16: dispatch_padding<K, at::BFloat16>(job, pad_mode, input, out); break;
    default: dispatch_padding<K, float>(job, pad_mode, input, out); break;
  }
  return out;
}

at::Tensor affine3d_cpu(const at::Tensor& input, const at::Tensor& theta, c10::string_view padding, double fill,
                        double noise_std, int64_t seed) {
  return affine_cpu<3>("affine3d", input, theta, padding, fill, noise_std, seed);
}

at::Tensor affine2d_cpu(const at::Tensor& input, const at::Tensor& theta, c10::string_view padding, double fill,
                        double noise_std, int64_t seed) {
  return affine_cpu<2>("affine2d", input, theta, padding, fill, noise_std, seed);
}

}  // namespace

TORCH_LIBRARY_IMPL(torchlite, CPU, m) {
  m.impl("affine3d", &affine3d_cpu);
  m.impl("affine2d", &affine2d_cpu);
}

}  // namespace torchlite
