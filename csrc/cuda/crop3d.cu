// crop3d on CUDA: a warp per output row, lanes along w.
//
// Lanes walk a row's w voxels in steps of 32, so both the volume reads (unit
// stride along W in the common case) and the output writes are coalesced.
// Each row recomputes its patch's spans from the centers (kernels/crop3d.h,
// the same arithmetic the CPU kernel runs): three int64 loads that every
// lane of the warp shares through the cache, cheaper than a separate launch.
// All indices are 64-bit: outputs and volumes may pass 2^31 elements.
#include "crop3d_args.h"
#include "kernels/crop3d.h"

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>

namespace torchlite {
namespace {

using kernels::CropSpan;

constexpr const char* kOp = "crop3d";
constexpr const char* kOpOut = "crop3d_out";

constexpr int kLanes = 32;        // threads along w
constexpr int kRowsPerBlock = 8;  // warps per block, one row each
constexpr int64_t kMaxBlocks = int64_t(1) << 20;  // then grid-stride

struct VolumeGeom {
  int64_t dims[3];
  int64_t strides[3];
};

struct PatchGeom {
  int64_t size[3];
  int64_t c_stride0, c_stride1;  // centers (N, 3), any strides
  int64_t rows;                  // N * d * h
  bool clamp;
};

template <typename T>
__global__ void crop3d_kernel(const T* __restrict__ vol, VolumeGeom vg,
                              const int64_t* __restrict__ centers, PatchGeom pg,
                              float fill, float clip_lo, float clip_hi,
                              float* __restrict__ out) {
  const int64_t d = pg.size[0], h = pg.size[1], w = pg.size[2];
  const int64_t first = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.y;
  const int64_t step = int64_t(gridDim.x) * kRowsPerBlock;
  for (int64_t row = first; row < pg.rows; row += step) {
    const int64_t y = row % h;
    const int64_t z = (row / h) % d;
    const int64_t n = row / (h * d);
    const int64_t* c = centers + n * pg.c_stride0;
    const CropSpan sz = kernels::crop_span(c[0], d, vg.dims[0], pg.clamp);
    const CropSpan sy = kernels::crop_span(c[pg.c_stride1], h, vg.dims[1], pg.clamp);
    const CropSpan sx = kernels::crop_span(c[2 * pg.c_stride1], w, vg.dims[2], pg.clamp);
    float* dst = out + row * w;
    if (!kernels::crop_inside(sz, z) || !kernels::crop_inside(sy, y)) {
      for (int64_t x = threadIdx.x; x < w; x += kLanes) dst[x] = fill;
      continue;
    }
    // Only formed once z and y are known to be inside the volume.
    const T* src = vol + (sz.start + z) * vg.strides[0] + (sy.start + y) * vg.strides[1];
    for (int64_t x = threadIdx.x; x < w; x += kLanes) {
      dst[x] = kernels::crop_inside(sx, x)
                   ? kernels::crop_value(src[(sx.start + x) * vg.strides[2]], clip_lo, clip_hi)
                   : fill;
    }
  }
}

void crop3d_into(const at::Tensor& volume, const at::Tensor& centers,
                 const crop3d::Args& a, at::Tensor& out) {
  if (out.numel() == 0) return;
  const c10::cuda::CUDAGuard guard(volume.device());
  VolumeGeom vg{};
  for (int k = 0; k < 3; ++k) {
    vg.dims[k] = volume.size(k);
    vg.strides[k] = volume.stride(k);
  }
  PatchGeom pg{};
  pg.size[0] = a.d;
  pg.size[1] = a.h;
  pg.size[2] = a.w;
  pg.c_stride0 = centers.stride(0);
  pg.c_stride1 = centers.stride(1);
  pg.rows = centers.size(0) * a.d * a.h;
  pg.clamp = a.clamp;
  const dim3 block(kLanes, kRowsPerBlock);
  const int64_t blocks = std::min<int64_t>((pg.rows + kRowsPerBlock - 1) / kRowsPerBlock, kMaxBlocks);
  const dim3 grid(static_cast<unsigned int>(blocks));
  const auto stream = c10::cuda::getCurrentCUDAStream();
  const int64_t* c = centers.const_data_ptr<int64_t>();
  float* dst = out.mutable_data_ptr<float>();
  if (volume.scalar_type() == at::kShort) {
    crop3d_kernel<int16_t><<<grid, block, 0, stream>>>(
        volume.const_data_ptr<int16_t>(), vg, c, pg, a.fill, a.clip_lo, a.clip_hi, dst);
  } else {
    crop3d_kernel<float><<<grid, block, 0, stream>>>(
        volume.const_data_ptr<float>(), vg, c, pg, a.fill, a.clip_lo, a.clip_hi, dst);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

at::Tensor crop3d_cuda(const at::Tensor& volume, const at::Tensor& centers,
                       at::IntArrayRef size, double fill, bool clamp,
                       std::optional<at::ArrayRef<double>> clip) {
  const auto a = crop3d::check_args(kOp, volume, centers, size, fill, clamp, clip);
  at::Tensor out = at::empty(crop3d::out_shape(centers, a), volume.options().dtype(at::kFloat));
  crop3d_into(volume, centers, a, out);
  return out;
}

void crop3d_out_cuda(const at::Tensor& volume, const at::Tensor& centers,
                     at::IntArrayRef size, double fill, bool clamp,
                     std::optional<at::ArrayRef<double>> clip, at::Tensor out) {
  const auto a = crop3d::check_args(kOpOut, volume, centers, size, fill, clamp, clip);
  crop3d::check_out(kOpOut, out, volume, centers, a);
  crop3d_into(volume, centers, a, out);
}

}  // namespace

TORCH_LIBRARY_IMPL(torchlite, CUDA, m) {
  m.impl("crop3d", &crop3d_cuda);
  m.impl("crop3d_out", &crop3d_out_cuda);
}

}  // namespace torchlite
