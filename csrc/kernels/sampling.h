// Linear interpolation of a voxel source at a real-valued position, shared by
// affine3d / affine2d / sample_patches3d on CPU and CUDA.
//
// Positions are in voxel index units (0 = the center of voxel 0) and held in
// double: a position is base + k * step along an output row, and in a 512^3
// scan float would leave ~3e-5 voxel of rounding; the interpolation weights
// themselves are float. The padding modes follow F.grid_sample:
//   border: the position is clamped to [0, size-1] before interpolating;
//   zeros:  each of the 2^dim corners outside the source reads 0;
//   fill:   each corner outside reads `fill` (grid_sample has no such mode;
//           it equals grid_sample(x - fill, zeros) + fill).
// Clip-on-read clamps every voxel value read to [lo, hi] before it is
// interpolated (padding values are not clipped).
#pragma once

#include "kernels/common.h"

#include <cstdint>

namespace torchlite {
namespace kernels {

enum class Padding : int { kBorder = 0, kZeros = 1, kFill = 2 };

// The lower neighbour along one axis and the weight of the upper one.
struct AxisSample {
  int32_t i0;
  float w1;
};

// Any position is safe, NaN and +-inf included (the clamp maps NaN to the
// lower bound), so no kernel can index out of bounds whatever theta holds.
// For zeros/fill the clamp to [-2, size+1] changes nothing: beyond it all
// corners are outside anyway. Border needs size >= 1 (with an empty source
// the operators' output is empty too).
template <Padding P>
TL_HOST_DEVICE AxisSample axis_sample(double position, int32_t size) {
  const double lo = P == Padding::kBorder ? 0.0 : -2.0;
  // Spelled so GCC vectorizes the CPU loops: with hi = double(size - 1) it
  // knows int(hi) and moves the conversion below into a branch.
  const double hi = P == Padding::kBorder ? static_cast<double>(size) - 1.0 : static_cast<double>(size) + 1.0;
  double p = position > lo ? position : lo;
  p = p < hi ? p : hi;
  int32_t f = static_cast<int32_t>(p);  // truncates toward zero: floor for p >= 0 (border) ...
  if (P != Padding::kBorder) f -= (p < static_cast<double>(f)) ? 1 : 0;  // ... else step down
  return {f, static_cast<float>(p - static_cast<double>(f))};
}

// True when both neighbours i0 and i0+1 are inside [0, size) (never for an
// empty axis).
TL_HOST_DEVICE bool axis_inside(int32_t i0, int32_t size) { return (i0 >= 0) & (i0 < size - 1); }

TL_HOST_DEVICE float lerp(float a, float b, float w) { return a + w * (b - a); }

// Clip keeps NaN as NaN, as torch.clamp and crop3d do. (A NaN voxel spreads
// to every interpolation touching it, even with weight 0, as in grid_sample.)
template <bool Clip, typename T>
TL_HOST_DEVICE float read_voxel(const T* p, float lo, float hi) {
  const float v = static_cast<float>(*p);
  return Clip ? clip_value(v, lo, hi) : v;
}

// Bilinear from the corner p = &src[y0][x0]; all four corners inside.
template <bool Clip, typename T>
TL_HOST_DEVICE float bilinear_inside(const T* p, int64_t sy, int64_t sx, float wy, float wx, float lo,
                                     float hi) {
  const float v00 = read_voxel<Clip>(p, lo, hi), v01 = read_voxel<Clip>(p + sx, lo, hi);
  const float v10 = read_voxel<Clip>(p + sy, lo, hi), v11 = read_voxel<Clip>(p + sy + sx, lo, hi);
  return lerp(lerp(v00, v01, wx), lerp(v10, v11, wx), wy);
}

// Trilinear = bilinear over the four (y, x) corners of z-blended values
// c(y, x) = lerp(v(z0, y, x), v(z1, y, x), wz). Blending z first (not last)
// is what lets the CPU engine blend two whole z-planes once and then
// interpolate in-plane (csrc/cpu/resample.h), with the very same float
// operations as this per-voxel form.
template <bool Clip, typename T>
TL_HOST_DEVICE float zblend(const T* p, int64_t sz, float wz, float lo, float hi) {
  return lerp(read_voxel<Clip>(p, lo, hi), read_voxel<Clip>(p + sz, lo, hi), wz);
}

template <bool Clip, typename T>
TL_HOST_DEVICE float trilinear_inside(const T* p, int64_t sz, int64_t sy, int64_t sx, float wz, float wy,
                                      float wx, float lo, float hi) {
  const float c00 = zblend<Clip>(p, sz, wz, lo, hi), c01 = zblend<Clip>(p + sx, sz, wz, lo, hi);
  const float c10 = zblend<Clip>(p + sy, sz, wz, lo, hi), c11 = zblend<Clip>(p + sy + sx, sz, wz, lo, hi);
  return lerp(lerp(c00, c01, wx), lerp(c10, c11, wx), wy);
}

// One corner index pair along an axis, with which of them are inside.
struct AxisCorners {
  int32_t i0, i1;
  bool in0, in1;
};

template <Padding P>
TL_HOST_DEVICE AxisCorners axis_corners(int32_t i0, int32_t size) {
  if (P == Padding::kBorder) {
    // i0 is in [0, size-1] after the border clamp; at size-1 the upper
    // weight is 0, and reading the edge voxel again keeps it in bounds.
    return {i0, tl_min(i0 + 1, size - 1), true, true};
  }
  return {i0, i0 + 1, i0 >= 0 && i0 < size, i0 + 1 >= 0 && i0 + 1 < size};
}

// Bilinear with per-corner bounds checks; `pad` is read for corners outside
// (0 for zeros, fill for fill; never used for border).
template <Padding P, bool Clip, typename T>
TL_HOST_DEVICE float bilinear_checked(const T* plane, int64_t sy, int64_t sx, AxisCorners y, AxisCorners x,
                                      float wy, float wx, float pad, float lo, float hi) {
  const T* r0 = plane + static_cast<int64_t>(y.i0) * sy;
  const T* r1 = plane + static_cast<int64_t>(y.i1) * sy;
  const int64_t x0 = static_cast<int64_t>(x.i0) * sx, x1 = static_cast<int64_t>(x.i1) * sx;
  const float v00 = (y.in0 && x.in0) ? read_voxel<Clip>(r0 + x0, lo, hi) : pad;
  const float v01 = (y.in0 && x.in1) ? read_voxel<Clip>(r0 + x1, lo, hi) : pad;
  const float v10 = (y.in1 && x.in0) ? read_voxel<Clip>(r1 + x0, lo, hi) : pad;
  const float v11 = (y.in1 && x.in1) ? read_voxel<Clip>(r1 + x1, lo, hi) : pad;
  return lerp(lerp(v00, v01, wx), lerp(v10, v11, wx), wy);
}

// z-blend of the column at `column` (= &src[0][y][x], inside in y and x):
// a z-corner outside reads pad.
template <bool Clip, typename T>
TL_HOST_DEVICE float zblend_checked(const T* column, int64_t sz, AxisCorners z, float wz, float pad, float lo,
                                    float hi) {
  const float v0 = z.in0 ? read_voxel<Clip>(column + static_cast<int64_t>(z.i0) * sz, lo, hi) : pad;
  const float v1 = z.in1 ? read_voxel<Clip>(column + static_cast<int64_t>(z.i1) * sz, lo, hi) : pad;
  return lerp(v0, v1, wz);
}

// A (y, x) corner outside reads pad for both z-corners, and lerp(pad, pad)
// is pad, so it skips the blend.
template <Padding P, bool Clip, typename T>
TL_HOST_DEVICE float trilinear_checked(const T* src, int64_t sz, int64_t sy, int64_t sx, AxisCorners z,
                                       AxisCorners y, AxisCorners x, float wz, float wy, float wx, float pad,
                                       float lo, float hi) {
  const T* r0 = src + static_cast<int64_t>(y.i0) * sy;
  const T* r1 = src + static_cast<int64_t>(y.i1) * sy;
  const int64_t x0 = static_cast<int64_t>(x.i0) * sx, x1 = static_cast<int64_t>(x.i1) * sx;
  const float c00 = (y.in0 && x.in0) ? zblend_checked<Clip>(r0 + x0, sz, z, wz, pad, lo, hi) : pad;
  const float c01 = (y.in0 && x.in1) ? zblend_checked<Clip>(r0 + x1, sz, z, wz, pad, lo, hi) : pad;
  const float c10 = (y.in1 && x.in0) ? zblend_checked<Clip>(r1 + x0, sz, z, wz, pad, lo, hi) : pad;
  const float c11 = (y.in1 && x.in1) ? zblend_checked<Clip>(r1 + x1, sz, z, wz, pad, lo, hi) : pad;
  return lerp(lerp(c00, c01, wx), lerp(c10, c11, wx), wy);
}

}  // namespace kernels
}  // namespace torchlite
