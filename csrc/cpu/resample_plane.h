// The plane path of the CPU resampling engine (3-D only; see resample.h).
//
// When the source z of an output plane does not depend on (y, x) (m[0][1] ==
// m[0][2] == 0: flips, scales, offsets and rotations about the index axis,
// i.e. the book's augmentation), every voxel of output plane kz blends the
// same two source planes with the same weight. So the two planes are blended
// once, over the bounding box of the plane's footprint (clipped and
// converted to float on the way), into a small buffer with a two-voxel ring
// of pad values around it; the output plane is then interpolated
// bilinearly from that buffer (L1/L2-resident) in a branch-free loop whose
// upper corners are always the lower ones + 1 (see kRing for why that gives
// the values of clamped corners). kernels::trilinear_* blend z first too,
// so this path does the same float operations as the per-voxel path and the
// CUDA kernel.
#pragma once

#include "cpu/resample.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace torchlite {
namespace cpu {

// The blended box has a ring of kRing pad voxels on every side, so the upper
// corner of every sample is the lower one + 1 on each axis, whatever the
// padding:
// - border: the lower corner is in [0, size-1]; at size-1 (a position
//   clamped to the edge) the upper one is in the ring, with weight 0, which
//   gives the edge value as the per-voxel kernels' clamped corner does
//   (a + 0 * (b - a) == a; NaN and inf spread the same way);
// - zeros/fill: the lower corner is clamped to [-2, size]; then both corners
//   of a position beyond the edge are pad, as they are in the source.
constexpr int32_t kRing = 2;

// Per output voxel: offset of corner (y0, x0) in the ringed box, and the
// weights of (y1, x1).
struct alignas(64) PlanePlan {
  int32_t offset[kTile];
  float wy[kTile];
  float wx[kTile];
};

// What a plane's interpolation plan depends on: its in-plane map (relative to
// its box) and the box and plane sizes.
struct PlaneKey {
  kernels::VoxelMap<2> map;
  int32_t bh, bw, h, w;
};

// A thread's working memory across the planes it runs.
struct PlaneScratch {
  std::vector<float> blended;             // channels x (box + ring)
  std::vector<int32_t> span_lo, span_hi;  // per box row: the columns read
  // The last plane's plan (one PlanePlan per kTile chunk) and row spans. The
  // next plane of the patch reuses them when its key is the same, which is
  // every plane for the book's augmentation (flips, scales, offsets and
  // rotations about the index axis do not move the in-plane map with z):
  // planning costs about as much as interpolating.
  std::vector<PlanePlan> plans;
  PlaneKey key{};
  bool have_plan = false;
};

// One axis of a row segment: lower corner c0 (see kRing) and the weight of
// the upper one.
template <Padding P>
inline void plane_axis(double base, double step, int32_t k0, int len, int32_t size, int32_t* __restrict c0,
                       float* __restrict w) {
  for (int j = 0; j < len; ++j) {
    const kernels::AxisSample s = kernels::axis_sample<P>(base + static_cast<double>(k0 + j) * step, size);
    // border: already in [0, size-1]; zeros/fill: in [-2, size+1], clamped.
    c0[j] = P == Padding::kBorder ? s.i0 : std::min(s.i0, size);
    w[j] = s.w1;
  }
}

inline void plane_offsets(int len, int32_t stride, const int32_t* __restrict cy, const int32_t* __restrict cx,
                          int32_t* __restrict offset) {
  for (int j = 0; j < len; ++j) offset[j] = cy[j] * stride + cx[j];
}

// Plans elements [s0, s0 + n) of an h x w output plane through the 2-D map.
template <Padding P>
inline void plan_plane(const kernels::VoxelMap<2>& map, int32_t w, int32_t bh, int32_t bw, int32_t stride, int64_t s0,
                       int n, PlanePlan& plan, int32_t* cy, int32_t* cx) {
  int d = 0;
  while (d < n) {
    const int64_t s = s0 + d;
    const int32_t ky = static_cast<int32_t>(s / w), kx0 = static_cast<int32_t>(s % w);
    const int len = static_cast<int>(std::min<int64_t>(w - kx0, n - d));
    const double ky_d = static_cast<double>(ky);
    plane_axis<P>(map.b[0] + map.m[0][0] * ky_d, map.m[0][1], kx0, len, bh, cy + d, plan.wy + d);
    plane_axis<P>(map.b[1] + map.m[1][0] * ky_d, map.m[1][1], kx0, len, bw, cx + d, plan.wx + d);
    plane_offsets(len, stride, cy + d, cx + d, plan.offset + d);
    d += len;
  }
}

// The upper x corner is always the lower one + 1 (kRing), so on a
// little-endian machine each row's two corners come in one 8-byte load: GCC
// builds its vectors of gathered values lane by lane, and halving the loads
// halved the cost of this loop (affine3d on 256 augmented 32x48x48 crops:
// 10.5 -> 7.2 ms without noise).
inline void gather_plane(const PlanePlan& plan, int n, const float* __restrict box, int32_t stride,
                         float* __restrict out) {
  for (int j = 0; j < n; ++j) {
    const float* p = box + plan.offset[j];
    const float wx = plan.wx[j];
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t top, bottom;  // (p[0], p[1]) and (p[stride], p[stride + 1])
    std::memcpy(&top, p, sizeof top);
    std::memcpy(&bottom, p + stride, sizeof bottom);
    const float v00 = kernels::bits_float(static_cast<uint32_t>(top));
    const float v01 = kernels::bits_float(static_cast<uint32_t>(top >> 32));
    const float v10 = kernels::bits_float(static_cast<uint32_t>(bottom));
    const float v11 = kernels::bits_float(static_cast<uint32_t>(bottom >> 32));
#else
    const float v00 = p[0], v01 = p[1], v10 = p[stride], v11 = p[stride + 1];
#endif
    out[j] = kernels::lerp(kernels::lerp(v00, v01, wx), kernels::lerp(v10, v11, wx), plan.wy[j]);
  }
}

template <bool Clip, typename src_t>
inline void blend_row(const src_t* a, const src_t* b, int64_t sx, bool in0, bool in1, float wz, float pad, float lo,
                      float hi, int32_t n, float* __restrict dst) {
  if (in0 && in1) {
    for (int32_t x = 0; x < n; ++x) {
      dst[x] = kernels::lerp(kernels::read_voxel<Clip>(a + x * sx, lo, hi),
                             kernels::read_voxel<Clip>(b + x * sx, lo, hi), wz);
    }
  } else if (in0) {
    for (int32_t x = 0; x < n; ++x) dst[x] = kernels::lerp(kernels::read_voxel<Clip>(a + x * sx, lo, hi), pad, wz);
  } else if (in1) {
    for (int32_t x = 0; x < n; ++x) dst[x] = kernels::lerp(pad, kernels::read_voxel<Clip>(b + x * sx, lo, hi), wz);
  } else {
    for (int32_t x = 0; x < n; ++x) dst[x] = kernels::lerp(pad, pad, wz);
  }
}

// The source box [lo, hi] (inclusive) on one axis holding every corner read
// for positions in [pmin, pmax]; false when the positions are not finite.
inline bool footprint(double pmin, double pmax, int32_t size, int32_t& lo, int32_t& hi) {
  if (!(pmin > -1e9 && pmax < 1e9)) return false;  // also false for NaN
  // The margin covers rounding between these corner positions and the
  // per-voxel ones (a different order of operations).
  const double a = std::floor(pmin - 1e-6), b = std::floor(pmax + 1e-6) + 1.0;
  const double top = static_cast<double>(size - 1);
  lo = static_cast<int32_t>(a < 0.0 ? 0.0 : (a > top ? top : a));
  hi = static_cast<int32_t>(b < 0.0 ? 0.0 : (b > top ? top : b));
  return true;
}

// For zeros/fill: which columns of each box row any corner reads. The
// footprint of a rotated plane is a parallelogram, on average ~2/3 of its
// bounding box; skipping the rest skips its reads from the (cold) source.
// Row r is read by positions with y in [r-1, r+1]; the x-range of the
// parallelogram within that strip comes from its vertices inside the strip
// and its edges' crossings of the strip's two lines. (Not for border: there
// positions beyond an edge read the clamped edge row, so all are kept.)
inline void row_spans(const kernels::VoxelMap<2>& map, int32_t h, int32_t w, int32_t bh, int32_t bw,
                      PlaneScratch& scratch) {
  double vy[4], vx[4];
  for (int v = 0; v < 4; ++v) {
    const double ky = (v & 2) ? h - 1 : 0, kx = (v & 1) ? w - 1 : 0;
    vy[v] = map.b[0] + map.m[0][0] * ky + map.m[0][1] * kx;
    vx[v] = map.b[1] + map.m[1][0] * ky + map.m[1][1] * kx;
  }
  static constexpr int kEdges[4][2] = {{0, 1}, {2, 3}, {0, 2}, {1, 3}};
  scratch.span_lo.resize(bh);
  scratch.span_hi.resize(bh);
  for (int32_t r = 0; r < bh; ++r) {
    const double lo = r - 1 - 1e-6, hi = r + 1 + 1e-6;
    double xmin = 1e300, xmax = -1e300;
    for (int v = 0; v < 4; ++v) {
      if (vy[v] >= lo && vy[v] <= hi) {
        xmin = std::min(xmin, vx[v]);
        xmax = std::max(xmax, vx[v]);
      }
    }
    for (const auto& e : kEdges) {
      const double y0 = vy[e[0]], y1 = vy[e[1]];
      if (y0 == y1) continue;
      for (const double line : {lo, hi}) {
        const double t = (line - y0) / (y1 - y0);
        if (t >= 0.0 && t <= 1.0) {
          const double x = vx[e[0]] + t * (vx[e[1]] - vx[e[0]]);
          xmin = std::min(xmin, x);
          xmax = std::max(xmax, x);
        }
      }
    }
    if (xmin > xmax) {  // the strip misses the footprint
      scratch.span_lo[r] = 1;
      scratch.span_hi[r] = 0;
      continue;
    }
    const double a = std::floor(xmin - 1e-6), b = std::floor(xmax + 1e-6) + 1.0;
    scratch.span_lo[r] = static_cast<int32_t>(std::max(a, 0.0));
    scratch.span_hi[r] = static_cast<int32_t>(std::min(b, static_cast<double>(bw - 1)));
  }
}

// Output plane kz's in-plane map, relative to its footprint's box [box_lo,
// box_hi] in the source (rows, columns); false when the map is not finite.
inline bool plane_footprint(const Job<3>& job, const kernels::VoxelMap<3>& map, int32_t kz,
                            kernels::VoxelMap<2>& map2, int32_t* box_lo, int32_t* box_hi) {
  const int32_t h = job.out_size[1], w = job.out_size[2];
  for (int i = 0; i < 2; ++i) {
    const double base = map.b[i + 1] + map.m[i + 1][0] * static_cast<double>(kz);
    const double dy = map.m[i + 1][1] * static_cast<double>(h - 1), dx = map.m[i + 1][2] * static_cast<double>(w - 1);
    const double pmin = base + std::min(dy, 0.0) + std::min(dx, 0.0);
    const double pmax = base + std::max(dy, 0.0) + std::max(dx, 0.0);
    if (!footprint(pmin, pmax, job.src_size[i + 1], box_lo[i], box_hi[i])) return false;
    map2.m[i][0] = map.m[i + 1][1];
    map2.m[i][1] = map.m[i + 1][2];
    map2.b[i] = base - static_cast<double>(box_lo[i]);
  }
  return true;
}

// The source z of output plane kz (the plane path's maps keep it constant
// over the plane): the lower of the two source planes it blends, and the
// upper one's weight.
template <Padding P>
inline kernels::AxisSample plane_z(const Job<3>& job, const kernels::VoxelMap<3>& map, int32_t kz) {
  return kernels::axis_sample<P>(map.b[0] + map.m[0][0] * static_cast<double>(kz), job.src_size[0]);
}

// How many output planes ahead run_plane asks for the source planes (see
// prefetch_plane). Measured on the book's workload (sample_patches3d from a
// cold 300x512x512 scan): no prefetch 36 ms, 1 plane ahead 29 ms, 2 ahead
// 28 ms, 3 ahead 29 ms.
constexpr int32_t kPrefetchPlanes = 2;

// Asks the memory system for the source rows output plane kz of image n_img
// will blend. The planes come from a cold scan, rows 1 KB+ apart, so the
// reads then overlap the interpolation of the planes before instead of
// stalling the blend. `known` (may be null) is a plane's box with the row
// spans computed for it (zeros/fill); they are used when this plane's box is
// the same, else the whole box is asked for. Prefetches are hints: every
// address is inside the source, and a wrong guess costs only bandwidth.
struct SpannedBox {
  int32_t lo[2], hi[2];
  const int32_t* span_lo;  // per box row, the first and last column read
  const int32_t* span_hi;
};

template <Padding P, typename src_t>
inline void prefetch_plane(const Job<3>& job, int64_t n_img, int32_t kz, const src_t* src, const SpannedBox* known) {
  const kernels::VoxelMap<3>& map = job.maps[n_img];
  kernels::VoxelMap<2> map2;
  int32_t box_lo[2], box_hi[2];
  if (!plane_footprint(job, map, kz, map2, box_lo, box_hi)) return;
  const int32_t bh = box_hi[0] - box_lo[0] + 1, bw = box_hi[1] - box_lo[1] + 1;
  const bool same_box = known != nullptr && known->lo[0] == box_lo[0] && known->lo[1] == box_lo[1] &&
                        known->hi[0] == box_hi[0] && known->hi[1] == box_hi[1];
  const int32_t* span_lo = same_box ? known->span_lo : nullptr;
  const int32_t* span_hi = same_box ? known->span_hi : nullptr;
  const kernels::AxisCorners zc = kernels::axis_corners<P>(plane_z<P>(job, map, kz).i0, job.src_size[0]);
  const int64_t sz = job.src_stride[0], sy = job.src_stride[1], sx = job.src_stride[2];
  const src_t* corner = src + n_img * job.src_image_stride + static_cast<int64_t>(box_lo[0]) * sy +
                        static_cast<int64_t>(box_lo[1]) * sx;
  for (int k = 0; k < 2; ++k) {
    if (!(k == 0 ? zc.in0 : zc.in1)) continue;
    const src_t* plane0 = corner + static_cast<int64_t>(k == 0 ? zc.i0 : zc.i1) * sz;
    for (int32_t r = 0; r < bh; ++r) {
      const int32_t x0 = span_lo ? span_lo[r] : 0, x1 = span_hi ? span_hi[r] : bw - 1;
      if (x1 < x0) continue;
      const char* a = reinterpret_cast<const char*>(plane0 + r * sy + x0 * sx);
      const char* b = reinterpret_cast<const char*>(plane0 + r * sy + x1 * sx);
      for (const char* q = a; q <= b; q += 64) __builtin_prefetch(q);
      __builtin_prefetch(b);
    }
  }
}

// Output plane kz of image n_img through the plane path; false (nothing
// written) when it does not apply.
template <Padding P, bool Clip, typename src_t, typename out_t>
inline bool run_plane(const Job<3>& job, int64_t n_img, int32_t kz, const src_t* src, out_t* out,
                      PlaneScratch& scratch) {
  const kernels::VoxelMap<3>& map = job.maps[n_img];
  if (map.m[0][1] != 0.0 || map.m[0][2] != 0.0) return false;
  if (job.src_size[0] <= 0 || job.src_size[1] <= 0 || job.src_size[2] <= 0) return false;
  const int32_t h = job.out_size[1], w = job.out_size[2];

  // The in-plane map of this plane, and its footprint in the source.
  kernels::VoxelMap<2> map2;
  int32_t box_lo[2], box_hi[2];
  if (!plane_footprint(job, map, kz, map2, box_lo, box_hi)) return false;
  const int32_t bh = box_hi[0] - box_lo[0] + 1, bw = box_hi[1] - box_lo[1] + 1;
  const int32_t stride = bw + 2 * kRing;
  const int64_t ringed = static_cast<int64_t>(bh + 2 * kRing) * stride;
  if (ringed > 4 * static_cast<int64_t>(h) * w + 4096) return false;  // sparse footprint: the blend would not pay

  // Blend the two source planes over the box, every channel; ring = pad.
  const kernels::AxisSample z = plane_z<P>(job, map, kz);
  const kernels::AxisCorners zc = kernels::axis_corners<P>(z.i0, job.src_size[0]);
  scratch.blended.resize(static_cast<size_t>(ringed * job.channels));
  const int64_t sz = job.src_stride[0], sy = job.src_stride[1], sx = job.src_stride[2];
  const float pad = P == Padding::kBorder ? 0.f : job.pad;
  const bool trim = P != Padding::kBorder;
  const int64_t plane = static_cast<int64_t>(h) * w;
  const int64_t chunks = (plane + kTile - 1) / kTile;
  PlaneKey key;
  std::memset(&key, 0, sizeof(key));  // padding bytes too: keys are compared bytewise
  key.map = map2;
  key.bh = bh;
  key.bw = bw;
  key.h = h;
  key.w = w;
  if (!scratch.have_plan || std::memcmp(&key, &scratch.key, sizeof(key)) != 0) {
    if (trim) row_spans(map2, h, w, bh, bw, scratch);
    scratch.plans.resize(static_cast<size_t>(chunks));
    alignas(64) int32_t cy[kTile], cx[kTile];
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t d = c * kTile;
      const int n = static_cast<int>(std::min<int64_t>(kTile, plane - d));
      plan_plane<P>(map2, w, bh, bw, stride, d, n, scratch.plans[c], cy, cx);
    }
    scratch.key = key;
    scratch.have_plan = true;
  }
  for (int64_t c = 0; c < job.channels; ++c) {
    const src_t* image = src + n_img * job.src_image_stride + c * job.src_channel_stride;
    const src_t* corner = image + static_cast<int64_t>(box_lo[0]) * sy + static_cast<int64_t>(box_lo[1]) * sx;
    float* ring = scratch.blended.data() + c * ringed;
    std::fill(ring, ring + kRing * stride, pad);
    std::fill(ring + (bh + kRing) * static_cast<int64_t>(stride), ring + ringed, pad);
    for (int32_t r = 0; r < bh; ++r) {
      float* row_out = ring + static_cast<int64_t>(r + kRing) * stride;
      int32_t x0 = 0, x1 = bw - 1;
      if (trim) {
        x0 = scratch.span_lo[r];
        x1 = scratch.span_hi[r];
      }
      if (x1 < x0) {  // nothing read: all pad
        std::fill(row_out, row_out + stride, pad);
        continue;
      }
      std::fill(row_out, row_out + kRing + x0, pad);
      std::fill(row_out + kRing + 1 + x1, row_out + stride, pad);
      const src_t* row = corner + r * sy + x0 * sx;
      blend_row<Clip>(zc.in0 ? row + zc.i0 * sz : row, zc.in1 ? row + zc.i1 * sz : row, sx, zc.in0, zc.in1, z.w1,
                      pad, job.clip_lo, job.clip_hi, x1 - x0 + 1, row_out + kRing + x0);
    }
  }

  // Ask for the source of the plane kPrefetchPlanes ahead: of this image
  // (with this plane's row spans when its box is the same: the book's
  // augmentation does not move the in-plane map with z), or of the next image, whose
  // first planes would otherwise start cold (work items run image after
  // image on a thread).
  const int64_t ahead = static_cast<int64_t>(kz) + kPrefetchPlanes;
  if (ahead < job.out_size[0]) {
    const SpannedBox known{{box_lo[0], box_lo[1]}, {box_hi[0], box_hi[1]}, scratch.span_lo.data(),
                           scratch.span_hi.data()};
    prefetch_plane<P>(job, n_img, static_cast<int32_t>(ahead), src, trim ? &known : nullptr);
  } else if (n_img + 1 < job.images) {
    prefetch_plane<P>(job, n_img + 1, static_cast<int32_t>(ahead - job.out_size[0]), src, nullptr);
  }

  const int64_t spatial = plane * job.out_size[0];
  alignas(64) float buffer[kTile];
  for (int64_t chunk = 0; chunk < chunks; ++chunk) {
    const int64_t d = chunk * kTile;
    const int n = static_cast<int>(std::min<int64_t>(kTile, plane - d));
    const PlanePlan& plan = scratch.plans[chunk];
    for (int64_t c = 0; c < job.channels; ++c) {
      const int64_t e0 = (n_img * job.channels + c) * spatial + kz * plane + d;
      float* dst = chunk_buffer(out, e0, buffer);
      // Points at box voxel (0, 0), so ring indices -2 .. size+1 are in range.
      gather_plane(plan, n, scratch.blended.data() + c * ringed + kRing * stride + kRing, stride, dst);
      if (job.noise_std != 0.f) add_noise(dst, e0, n, job.key, job.noise_std);
      finish_chunk(dst, e0, n, out);
    }
  }
  return true;
}

}  // namespace cpu
}  // namespace torchlite
