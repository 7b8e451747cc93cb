// The CUDA engine behind affine3d, affine2d and sample_patches3d: the twin of
// csrc/cpu/resample.h, with the same per-voxel math (kernels/*.h).
//
// One thread owns four consecutive flat output elements, the four normals
// one Philox call yields (kernels/noise.h), so no random number is computed
// twice. Positions are base + kx * step exactly as on the CPU (same order of
// operations; nvcc may fuse multiply-adds, so results agree to float
// rounding, not bit for bit).
#pragma once

#include "kernels/noise.h"
#include "kernels/resample_geometry.h"
#include "kernels/sampling.h"
#include "kernels/voxel_map.h"

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <cstdint>

namespace torchlite {
namespace cuda {

using kernels::Padding;

template <int K>
using Geometry = kernels::ResampleGeometry<K>;

// Per-sample maps from F.affine_grid thetas (N, K, K+1), double, contiguous.
template <int K>
struct NormalizedThetaMaps {
  const double* theta;
  int32_t size[K];
  __device__ kernels::VoxelMap<K> operator()(int64_t n) const {
    return kernels::map_from_normalized_theta<K>(theta + n * K * (K + 1), size);
  }
};

// Per-patch maps from voxel thetas (N, 3, 4) and centers (N, 3), double, contiguous.
struct PatchMaps {
  const double* theta;
  const double* centers;
  int32_t size[3];
  __device__ kernels::VoxelMap<3> operator()(int64_t n) const {
    return kernels::map_from_patch_theta(theta + n * 12, centers + n * 3, size);
  }
};

template <int K, Padding P, bool Clip, typename src_t>
__device__ __forceinline__ float sample(const Geometry<K>& g, const src_t* src, const double* pos) {
  kernels::AxisSample s[K];
  bool inside = true;
  for (int a = 0; a < K; ++a) {
    s[a] = kernels::axis_sample<P>(pos[a], g.src_size[a]);
    inside = inside & kernels::axis_inside(s[a].i0, g.src_size[a]);
  }
  const int64_t sx = g.src_stride[K - 1], sy = g.src_stride[K - 2];
  const float lo = g.clip_lo, hi = g.clip_hi;
  if constexpr (K == 3) {
    const int64_t sz = g.src_stride[0];
    if (inside) {
      const src_t* p = src + s[0].i0 * sz + s[1].i0 * sy + s[2].i0 * sx;
      return kernels::trilinear_inside<Clip>(p, sz, sy, sx, s[0].w1, s[1].w1, s[2].w1, lo, hi);
    }
    return kernels::trilinear_checked<P, Clip>(src, sz, sy, sx, kernels::axis_corners<P>(s[0].i0, g.src_size[0]),
                                               kernels::axis_corners<P>(s[1].i0, g.src_size[1]),
                                               kernels::axis_corners<P>(s[2].i0, g.src_size[2]), s[0].w1, s[1].w1,
                                               s[2].w1, g.pad, lo, hi);
  } else {
    if (inside) {
      const src_t* p = src + s[0].i0 * sy + s[1].i0 * sx;
      return kernels::bilinear_inside<Clip>(p, sy, sx, s[0].w1, s[1].w1, lo, hi);
    }
    return kernels::bilinear_checked<P, Clip>(src, sy, sx, kernels::axis_corners<P>(s[0].i0, g.src_size[0]),
                                              kernels::axis_corners<P>(s[1].i0, g.src_size[1]), s[0].w1, s[1].w1,
                                              g.pad, lo, hi);
  }
}

template <int K, Padding P, bool Clip, typename src_t, typename out_t, typename Maps>
__global__ void resample_kernel(Geometry<K> g, Maps maps, const src_t* __restrict__ src, out_t* __restrict__ out,
                                int64_t numel) {
  int64_t spatial = 1;
  for (int i = 0; i < K; ++i) spatial *= g.out_size[i];
  const int64_t groups = (numel + 3) / 4;
  for (int64_t grp = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; grp < groups;
       grp += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    kernels::Normal4 z{0.f, 0.f, 0.f, 0.f};
    if (g.noise_std != 0.f) z = kernels::normal4(g.key, static_cast<uint64_t>(grp));
    const float zs[4] = {z.z0, z.z1, z.z2, z.z3};
    int64_t cached_n = -1;
    kernels::VoxelMap<K> map;
    for (int j = 0; j < 4; ++j) {
      const int64_t e = grp * 4 + j;
      if (e >= numel) break;
      const int64_t image_channel = e / spatial;
      const int64_t n = image_channel / g.channels, c = image_channel % g.channels;
      if (n != cached_n) {
        map = maps(n);
        cached_n = n;
      }
      // Spatial index -> output coordinates; positions as on the CPU:
      // base = b + sum over leading axes (last first), then + kx * step.
      int64_t s = e % spatial;
      const int32_t kx = static_cast<int32_t>(s % g.out_size[K - 1]);
      s /= g.out_size[K - 1];
      double pos[K];
      for (int i = 0; i < K; ++i) pos[i] = map.b[i];
      for (int jj = K - 2; jj >= 0; --jj) {
        const double kj = static_cast<double>(s % g.out_size[jj]);
        s /= g.out_size[jj];
        for (int i = 0; i < K; ++i) pos[i] += map.m[i][jj] * kj;
      }
      for (int i = 0; i < K; ++i) pos[i] += static_cast<double>(kx) * map.m[i][K - 1];
      const src_t* image = src + n * g.src_image_stride + c * g.src_channel_stride;
      const float v = sample<K, P, Clip>(g, image, pos) + g.noise_std * zs[j];
      out[e] = static_cast<out_t>(v);
    }
  }
}

template <int K, Padding P, bool Clip, typename src_t, typename out_t, typename Maps>
void launch_resample(const Geometry<K>& g, const Maps& maps, const src_t* src, out_t* out, int64_t numel) {
  if (numel == 0) return;
  constexpr int kThreads = 256;
  const int64_t groups = (numel + 3) / 4;
  // Grid-stride loop: cap the grid, each thread takes several groups.
  const int64_t blocks = std::min<int64_t>((groups + kThreads - 1) / kThreads, int64_t{1} << 20);
  resample_kernel<K, P, Clip, src_t, out_t, Maps>
      <<<static_cast<unsigned>(blocks), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(g, maps, src, out, numel);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace cuda
}  // namespace torchlite
