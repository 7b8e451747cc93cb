// CUDA kernels of affine3d / affine2d (see csrc/cpu/affine.cpp).
#include "cuda/resample.cuh"
#include "sampling_args.h"
#include "sampling_geometry.h"

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

namespace torchlite {
namespace {

using kernels::Padding;

template <int K, typename scalar_t>
void dispatch_padding(const cuda::Geometry<K>& g, const cuda::NormalizedThetaMaps<K>& maps, Padding pad_mode,
                      const at::Tensor& input, at::Tensor& out) {
  const scalar_t* src = input.const_data_ptr<scalar_t>();
  scalar_t* dst = out.mutable_data_ptr<scalar_t>();
  const int64_t numel = out.numel();
  switch (pad_mode) {
    case Padding::kBorder: cuda::launch_resample<K, Padding::kBorder, false>(g, maps, src, dst, numel); break;
    case Padding::kZeros: cuda::launch_resample<K, Padding::kZeros, false>(g, maps, src, dst, numel); break;
    case Padding::kFill: cuda::launch_resample<K, Padding::kFill, false>(g, maps, src, dst, numel); break;
  }
}

template <int K>
at::Tensor affine_cuda(const char* op, const at::Tensor& input, const at::Tensor& theta, c10::string_view padding,
                       double fill, double noise_std, int64_t seed) {
  sampling::check_affine(op, K, input, theta, fill, noise_std);
  const Padding pad_mode = sampling::parse_padding(op, padding);
  const c10::cuda::CUDAGuard device_guard(input.device());
  auto out = at::empty(input.sizes(), input.options().memory_format(at::MemoryFormat::Contiguous));
  if (out.numel() == 0) return out;

  const cuda::Geometry<K> g = sampling::affine_geometry<K>(input, pad_mode, fill, noise_std, seed);
  cuda::NormalizedThetaMaps<K> maps;
  for (int i = 0; i < K; ++i) maps.size[i] = g.out_size[i];
  // Converted on the device (no host round trip); kept alive until return,
  // and the stream orders the kernel after the conversion.
  const at::Tensor th = theta.to(at::kDouble).contiguous();
  maps.theta = th.const_data_ptr<double>();

  switch (input.scalar_type()) {
    case at::kHalf: dispatch_padding<K, c10::Half>(g, maps, pad_mode, input, out); break;
    case at::kBFloat16: dispatch_padding<K, c10::BFloat16>(g, maps, pad_mode, input, out); break;
    default: dispatch_padding<K, float>(g, maps, pad_mode, input, out); break;
  }
  return out;
}

at::Tensor affine3d_cuda(const at::Tensor& input, const at::Tensor& theta, c10::string_view padding, double fill,
                         double noise_std, int64_t seed) {
  return affine_cuda<3>("affine3d", input, theta, padding, fill, noise_std, seed);
}

at::Tensor affine2d_cuda(const at::Tensor& input, const at::Tensor& theta, c10::string_view padding, double fill,
                         double noise_std, int64_t seed) {
  return affine_cuda<2>("affine2d", input, theta, padding, fill, noise_std, seed);
}

}  // namespace

TORCH_LIBRARY_IMPL(torchlite, CUDA, m) {
  m.impl("affine3d", &affine3d_cuda);
  m.impl("affine2d", &affine2d_cuda);
}

}  // namespace torchlite
