// CPU kernel of sample_patches3d: crop + affine + clip + noise in one pass,
// straight from the whole scan (any strides: a memory-mapped volume is read
// in place, only the voxels the patches touch).
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

template <bool Clip, typename src_t>
TL_CPU_CLONES void patch_items(const cpu::Job<3>& job, const src_t* src, float* out, int64_t i0, int64_t i1) {
  cpu::run_items<3, Padding::kFill, Clip>(job, src, out, i0, i1);
}

template <bool Clip, typename src_t>
void patch_run(const cpu::Job<3>& job, const src_t* src, float* out) {
  cpu::parallel_items(job, [&](int64_t i0, int64_t i1) { patch_items<Clip>(job, src, out, i0, i1); });
}

at::Tensor sample_patches3d_cpu(const at::Tensor& volume, const at::Tensor& centers, const at::Tensor& theta,
                                at::IntArrayRef size, double fill, c10::optional<at::ArrayRef<double>> clip,
                                double noise_std, int64_t seed) {
  sampling::check_sample_patches(volume, centers, theta, size, fill, noise_std);
  const sampling::Clip clip_range = sampling::parse_clip("sample_patches3d", clip);
  const int64_t n = centers.size(0);
  auto out = cpu::empty_output({n, 1, size[0], size[1], size[2]}, at::kFloat);
  if (out.numel() == 0) return out;

  const auto geometry = sampling::patch_geometry(volume, n, size, fill, clip_range, noise_std, seed);
  const at::Tensor th = theta.to(at::kDouble).contiguous();
  const at::Tensor ct = centers.to(at::kDouble).contiguous();
  const double* th_ptr = th.data_ptr<double>();
  const double* ct_ptr = ct.data_ptr<double>();
  std::vector<kernels::VoxelMap<3>> maps(n);
  for (int64_t i = 0; i < n; ++i) {
    maps[i] = kernels::map_from_patch_theta(th_ptr + i * 12, ct_ptr + i * 3, geometry.out_size);
  }
  const cpu::Job<3> job(geometry, maps.data());

  float* dst = out.mutable_data_ptr<float>();
  if (volume.scalar_type() == at::kShort) {
    const int16_t* src = volume.const_data_ptr<int16_t>();
    clip_range.enabled ? patch_run<true>(job, src, dst) : patch_run<false>(job, src, dst);
  } else {
    const float* src = volume.const_data_ptr<float>();
    clip_range.enabled ? patch_run<true>(job, src, dst) : patch_run<false>(job, src, dst);
  }
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(torchlite, CPU, m) { m.impl("sample_patches3d", &sample_patches3d_cpu); }

}  // namespace torchlite
