// Counter-based Gaussian noise, shared by every torchlite kernel that adds it.
//
// Why counter-based: the noise of output element e must be a pure function
// of (seed, e), so CPU and CUDA, any thread count and any launch shape give
// the same noise, and no generator state has to be carried between calls.
//
// Algorithm (a reference re-implementation in torch integer ops lives in
// torchlite/ops/reference.py, `philox_normal_reference`):
//   1. Philox4x32-10 (Salmon et al., SC'11, "Parallel random numbers: as easy
//      as 1, 2, 3"; the generator behind cuRAND's default) with
//      key = (seed mod 2^32, seed >> 32) and counter = (g mod 2^32, g >> 32,
//      0, 0), where g = e / 4, gives four 32-bit words w0..w3. Elements
//      4g .. 4g+3 share one Philox call, so each element costs a quarter of it.
//   2. Box-Muller on (w0, w1) gives the normals of elements 4g and 4g+1, on
//      (w2, w3) those of 4g+2 and 4g+3:
//        u     = (floor(w_r / 2^9) + 0.5) / 2^23          in (0, 1), exact in float
//        r     = sqrt(-2 ln u)                             (so |z| <= 5.77: the
//                                                          tail beyond is cut, p < 1e-8)
//        q     = w_a >> 30                                 quadrant
//        phi   = (((floor(w_a / 2^7) mod 2^23) + 0.5) / 2^23 - 0.5) * pi/2
//        theta = q * pi/2 + phi                           uniform on the circle
//        z0 = r cos(theta), z1 = r sin(theta).
//   ln, sqrt, sin and cos are branch-free polynomial / Newton forms (below),
//   so the CPU loop vectorizes and CPU and CUDA evaluate the same
//   arithmetic. Checked exhaustively over all 2^23 values of u and of the
//   angle: ln has a relative error < 3e-7, sqrt < 2e-7, sin/cos an absolute
//   error < 1e-7, and every normal is within 1e-6 of its exact-math value
//   (python_tests/test_noise.py checks the kernels against the float64
//   re-implementation to 1e-5). CPU and CUDA may differ by a few ulps
//   (compilers may contract a*b+c into FMAs), never by more.
#pragma once

#include "kernels/common.h"

#include <cstdint>
#include <cstring>

namespace torchlite {
namespace kernels {

struct PhiloxKey {
  uint32_t k0, k1;
};

struct PhiloxWords {
  uint32_t w0, w1, w2, w3;
};

struct Normal4 {
  float z0, z1, z2, z3;
};

TL_HOST_DEVICE PhiloxKey philox_key(int64_t seed) {
  const uint64_t s = static_cast<uint64_t>(seed);
  return {static_cast<uint32_t>(s), static_cast<uint32_t>(s >> 32)};
}

TL_HOST_DEVICE uint32_t float_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}

TL_HOST_DEVICE float bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

TL_HOST_DEVICE PhiloxWords philox4x32_10(uint64_t counter, PhiloxKey key) {
  uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32);
  uint32_t c2 = 0, c3 = 0;
  uint32_t k0 = key.k0, k1 = key.k1;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int round = 0; round < 10; ++round) {
    // 32x32 -> 64-bit products: one pmuludq lane on the CPU, mul.hi on CUDA.
    const uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c0;
    const uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * c2;
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return {c0, c1, c2, c3};
}

// ln(x) for normal positive floats (here x in (0, 1)). x = 2^e * m with m in
// [sqrt(1/2), sqrt(2)) found by integer arithmetic on the bits; then
// ln m = 2 atanh(s), s = (m-1)/(m+1), |s| <= 0.1716, by its odd series to s^9.
TL_HOST_DEVICE float fast_log(float x) {
  const uint32_t bits = float_bits(x);
  const int32_t e = static_cast<int32_t>(bits - 0x3F3504F3u) >> 23;  // 0x3F3504F3 = sqrt(1/2)
  const float m = bits_float(bits - (static_cast<uint32_t>(e) << 23));
  const float s = (m - 1.0f) / (m + 1.0f);
  const float s2 = s * s;
  const float series =
      1.0f + s2 * (1.0f / 3 + s2 * (1.0f / 5 + s2 * (1.0f / 7 + s2 * (1.0f / 9))));
  return static_cast<float>(e) * 0.693147180559945f + 2.0f * s * series;
}

// sqrt(x) for normal positive x, without libm: GCC keeps std::sqrt scalar
// (its errno branch for negative arguments blocks vectorization unless
// -fno-math-errno, which the build does not set). The bit trick gives
// 1/sqrt(x) to 3.5%, three Newton steps (quadratic convergence) bring it to
// float rounding (< 2e-7 relative), and x * (1/sqrt x) = sqrt x.
TL_HOST_DEVICE float sqrt_positive(float x) {
  float y = bits_float(0x5F3759DFu - (float_bits(x) >> 1));
  const float half_x = 0.5f * x;
  y = y * (1.5f - half_x * y * y);
  y = y * (1.5f - half_x * y * y);
  y = y * (1.5f - half_x * y * y);
  return x * y;
}

// sin and cos on [-pi/4, pi/4] by Taylor polynomials to x^9 and x^10.
TL_HOST_DEVICE float sin_quarter(float x) {
  const float x2 = x * x;
  return x * (1.0f + x2 * (-1.0f / 6 + x2 * (1.0f / 120 + x2 * (-1.0f / 5040 + x2 * (1.0f / 362880)))));
}

TL_HOST_DEVICE float cos_quarter(float x) {
  const float x2 = x * x;
  return 1.0f + x2 * (-0.5f + x2 * (1.0f / 24 + x2 * (-1.0f / 720 + x2 * (1.0f / 40320 + x2 * (-1.0f / 3628800)))));
}

// Two independent N(0,1) values from two uniform words (see the header).
TL_HOST_DEVICE void box_muller(uint32_t w_radius, uint32_t w_angle, float& z0, float& z1) {
  const float u = (static_cast<float>(w_radius >> 9) + 0.5f) * (1.0f / 8388608.0f);
  const float r = sqrt_positive(-2.0f * fast_log(u));
  const float phi =
      ((static_cast<float>((w_angle >> 7) & 0x7FFFFFu) + 0.5f) * (1.0f / 8388608.0f) - 0.5f) *
      1.57079632679489662f;
  const float sp = sin_quarter(phi), cp = cos_quarter(phi);
  const uint32_t q = w_angle >> 30;
  // Rotating by q quarter turns: odd q swaps cos and sin, and the sign bits
  // follow from (cos, sin)(q*pi/2) = (1,0), (0,1), (-1,0), (0,-1).
  const bool odd = (q & 1u) != 0;
  const float c = odd ? sp : cp;
  const float s = odd ? cp : sp;
  const uint32_t neg_c = ((q + 1u) & 2u) << 30;  // q = 1, 2
  const uint32_t neg_s = (q & 2u) << 30;         // q = 2, 3
  z0 = r * bits_float(float_bits(c) ^ neg_c);
  z1 = r * bits_float(float_bits(s) ^ neg_s);
}

// The N(0,1) values of elements 4g .. 4g+3.
TL_HOST_DEVICE Normal4 normal4(PhiloxKey key, uint64_t g) {
  const PhiloxWords w = philox4x32_10(g, key);
  Normal4 n;
  box_muller(w.w0, w.w1, n.z0, n.z1);
  box_muller(w.w2, w.w3, n.z2, n.z3);
  return n;
}

// The N(0,1) value of element e alone (costs a whole group: for CUDA threads
// that own one element; prefer normal4 where a thread owns four).
TL_HOST_DEVICE float normal_at(PhiloxKey key, uint64_t e) {
  const Normal4 n = normal4(key, e >> 2);
  switch (e & 3u) {
    case 0: return n.z0;
    case 1: return n.z1;
    case 2: return n.z2;
    default: return n.z3;
  }
}

}  // namespace kernels
}  // namespace torchlite
