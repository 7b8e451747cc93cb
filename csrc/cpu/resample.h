// The CPU engine behind affine3d, affine2d and sample_patches3d: every output
// voxel reads a source position given by a per-sample VoxelMap, interpolates
// it (kernels/sampling.h) and adds counter-based noise (kernels/noise.h).
// This file: the job description and the general, voxel-by-voxel path.
// resample_plane.h: the faster path for planes that read one pair of source
// planes (the book's augmentation). resample_run.h: work items and threads.
//
// Why it is shaped this way (each point measured against grid_sample):
// - no sampling grid is materialized: positions are affine in the output
//   index, so along a row they are base + k * step;
// - output is planned in tiles of kTile consecutive voxels of one image: a
//   tile's positions, corner offsets and weights are computed once, in
//   branch-free loops the compiler vectorizes, and reused for every channel;
// - the gather takes a fast path when all corners are inside the source;
// - the noise of a whole tile is generated in one vectorized loop (its
//   flat output indices are consecutive).
// Host-only: the CUDA kernels share the per-voxel math, not these loops.
#pragma once

#include "kernels/noise.h"
#include "kernels/resample_geometry.h"
#include "kernels/sampling.h"
#include "kernels/voxel_map.h"

#include <algorithm>
#include <cstdint>
#include <type_traits>

// Function multi-versioning for the hot loops: the build is portable (no
// -march), and clones let an AVX2 / AVX-512 machine run wider code, chosen
// once at load time. Put it on a function (with internal linkage, one per
// .cpp) that calls run_items: `flatten` inlines the engine into every clone,
// which would otherwise call one default-target copy.
// GCC >= 11 (the x86-64-v3/v4 names) on glibc (ifunc) only.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11 && \
    defined(__GLIBC__) && !defined(__CUDACC__)
#define TL_CPU_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"), flatten))
#else
#define TL_CPU_CLONES
#endif

namespace torchlite {
namespace cpu {

using kernels::Padding;

constexpr int kTile = 512;

// What one operator call samples: the geometry CPU and CUDA share
// (kernels/resample_geometry.h) and each image's map, computed on the host.
template <int K>
struct Job : kernels::ResampleGeometry<K> {
  Job(const kernels::ResampleGeometry<K>& geometry, const kernels::VoxelMap<K>* image_maps)
      : kernels::ResampleGeometry<K>(geometry), maps(image_maps) {}
  const kernels::VoxelMap<K>* maps;  // one per image
};

// A tile's interpolation plan, shared by all channels.
template <int K>
struct alignas(64) TilePlan {
  int32_t i0[K][kTile];
  float w[K][kTile];
  int64_t offset[kTile];  // of the lower corner; meaningful where inside
  uint8_t inside[kTile];  // all 2^K corners inside the source
};

// One axis of plan elements: positions base + (kx0 + j) * step. Separate,
// restrict-qualified loops (one per axis, then one combining them) are what
// GCC vectorizes; a single loop writing all arrays defeats its alias analysis.
template <Padding P>
inline void plan_axis(double base, double step, int32_t kx0, int len, int32_t size, int32_t* __restrict i0,
                      float* __restrict w) {
  for (int j = 0; j < len; ++j) {
    const kernels::AxisSample s = kernels::axis_sample<P>(base + static_cast<double>(kx0 + j) * step, size);
    i0[j] = s.i0;
    w[j] = s.w1;
  }
}

template <int K>
inline void plan_offsets(const Job<K>& job, int len, const int32_t* __restrict iz, const int32_t* __restrict iy,
                         const int32_t* __restrict ix, int64_t* __restrict offset, uint8_t* __restrict inside) {
  const int64_t sz = job.src_stride[0], sy = job.src_stride[K - 2], sx = job.src_stride[K - 1];
  const int32_t nz = job.src_size[0], ny = job.src_size[K - 2], nx = job.src_size[K - 1];
  for (int j = 0; j < len; ++j) {
    bool in = kernels::axis_inside(iy[j], ny) & kernels::axis_inside(ix[j], nx);
    int64_t off = static_cast<int64_t>(iy[j]) * sy + static_cast<int64_t>(ix[j]) * sx;
    if constexpr (K == 3) {
      in = in & kernels::axis_inside(iz[j], nz);
      off += static_cast<int64_t>(iz[j]) * sz;
    }
    offset[j] = off;
    inside[j] = in;
  }
}

// Plan elements [d, d + len): one output row segment.
template <int K, Padding P>
inline void plan_segment(const Job<K>& job, const double* base, const double* step, int32_t kx0, int len, int d,
                         TilePlan<K>& plan) {
  for (int a = 0; a < K; ++a) {
    plan_axis<P>(base[a], step[a], kx0, len, job.src_size[a], plan.i0[a] + d, plan.w[a] + d);
  }
  plan_offsets<K>(job, len, plan.i0[0] + d, plan.i0[K - 2] + d, plan.i0[K - 1] + d, plan.offset + d,
                  plan.inside + d);
}

// Plans spatial elements [s0, s0 + n) of an image, row segment by row segment.
template <int K, Padding P>
inline void plan_tile(const Job<K>& job, const kernels::VoxelMap<K>& map, int64_t s0, int n, TilePlan<K>& plan) {
  const int32_t width = job.out_size[K - 1];
  int d = 0;
  while (d < n) {
    const int64_t s = s0 + d;
    const int32_t kx0 = static_cast<int32_t>(s % width);
    int64_t lead = s / width;  // index of the row; its coordinates, last first
    double base[K], step[K];
    for (int i = 0; i < K; ++i) {
      base[i] = map.b[i];
      step[i] = map.m[i][K - 1];
    }
    for (int j = K - 2; j >= 0; --j) {
      const double kj = static_cast<double>(lead % job.out_size[j]);
      lead /= job.out_size[j];
      for (int i = 0; i < K; ++i) base[i] += map.m[i][j] * kj;
    }
    const int len = static_cast<int>(std::min<int64_t>(width - kx0, n - d));
    plan_segment<K, P>(job, base, step, kx0, len, d, plan);
    d += len;
  }
}

template <int K, Padding P, bool Clip, typename src_t>
inline void gather_tile(const Job<K>& job, const TilePlan<K>& plan, int n, const src_t* src, float* out) {
  const float pad = job.pad, lo = job.clip_lo, hi = job.clip_hi;
  const int64_t sx = job.src_stride[K - 1], sy = job.src_stride[K - 2];
  for (int j = 0; j < n; ++j) {
    const float wx = plan.w[K - 1][j], wy = plan.w[K - 2][j];
    if constexpr (K == 3) {
      const int64_t sz = job.src_stride[0];
      const float wz = plan.w[0][j];
      if (plan.inside[j]) {
        out[j] = kernels::trilinear_inside<Clip>(src + plan.offset[j], sz, sy, sx, wz, wy, wx, lo, hi);
      } else {
        out[j] = kernels::trilinear_checked<P, Clip>(
            src, sz, sy, sx, kernels::axis_corners<P>(plan.i0[0][j], job.src_size[0]),
            kernels::axis_corners<P>(plan.i0[1][j], job.src_size[1]),
            kernels::axis_corners<P>(plan.i0[2][j], job.src_size[2]), wz, wy, wx, pad, lo, hi);
      }
    } else {
      if (plan.inside[j]) {
        out[j] = kernels::bilinear_inside<Clip>(src + plan.offset[j], sy, sx, wy, wx, lo, hi);
      } else {
        out[j] = kernels::bilinear_checked<P, Clip>(src, sy, sx,
                                                    kernels::axis_corners<P>(plan.i0[0][j], job.src_size[0]),
                                                    kernels::axis_corners<P>(plan.i0[1][j], job.src_size[1]), wy,
                                                    wx, pad, lo, hi);
      }
    }
  }
}

// out[j] += std * N(0,1) of flat output element e0 + j, for j < n <= kTile.
inline void add_noise(float* out, int64_t e0, int n, kernels::PhiloxKey key, float std) {
  alignas(64) float z[kTile + 8];
  const uint64_t g0 = static_cast<uint64_t>(e0) >> 2;
  const int skip = static_cast<int>(e0 & 3);
  const int groups = (skip + n + 3) >> 2;
  for (int g = 0; g < groups; ++g) {
    const kernels::Normal4 v = kernels::normal4(key, g0 + static_cast<uint64_t>(g));
    z[4 * g] = v.z0;
    z[4 * g + 1] = v.z1;
    z[4 * g + 2] = v.z2;
    z[4 * g + 3] = v.z3;
  }
  for (int j = 0; j < n; ++j) out[j] += std * z[skip + j];
}

// A chunk is computed in float: straight in the output when that is float,
// else in `buffer`, then stored in the output dtype by finish_chunk.
template <typename out_t>
inline float* chunk_buffer(out_t* out, int64_t e0, float* buffer) {
  if constexpr (std::is_same_v<out_t, float>) {
    return out + e0;
  } else {
    return buffer;
  }
}

template <typename out_t>
inline void finish_chunk(const float* dst, int64_t e0, int n, out_t* out) {
  if constexpr (!std::is_same_v<out_t, float>) {
    for (int j = 0; j < n; ++j) out[e0 + j] = static_cast<out_t>(dst[j]);
  }
}

// Spatial elements [s0, s0 + len) of image n, every channel, voxel by voxel.
template <int K, Padding P, bool Clip, typename src_t, typename out_t>
inline void run_span(const Job<K>& job, int64_t n_img, int64_t s0, int64_t len, const src_t* src, out_t* out,
                     TilePlan<K>& plan) {
  int64_t spatial = 1;
  for (int i = 0; i < K; ++i) spatial *= job.out_size[i];
  alignas(64) float buffer[kTile];
  const src_t* image = src + n_img * job.src_image_stride;
  for (int64_t d = 0; d < len; d += kTile) {
    const int n = static_cast<int>(std::min<int64_t>(kTile, len - d));
    plan_tile<K, P>(job, job.maps[n_img], s0 + d, n, plan);
    for (int64_t c = 0; c < job.channels; ++c) {
      const int64_t e0 = (n_img * job.channels + c) * spatial + s0 + d;
      float* dst = chunk_buffer(out, e0, buffer);
      gather_tile<K, P, Clip>(job, plan, n, image + c * job.src_channel_stride, dst);
      if (job.noise_std != 0.f) add_noise(dst, e0, n, job.key, job.noise_std);
      finish_chunk(dst, e0, n, out);
    }
  }
}

}  // namespace cpu
}  // namespace torchlite
