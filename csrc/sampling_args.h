// Argument checks and parsing shared by the CPU and CUDA launchers of
// affine3d / affine2d / sample_patches3d (host code only), so both devices
// accept exactly the same inputs and say the same thing about bad ones.
#pragma once

#include "checks.h"
#include "kernels/noise.h"
#include "kernels/sampling.h"

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <c10/util/Optional.h>
#include <c10/util/string_view.h>

#include <cmath>
#include <cstdint>
#include <string>

namespace torchlite {
namespace sampling {

// Per-axis sizes are held in int32 by the kernels (positions are clamped to
// [-2, size+1] before the cast); totals may exceed 2^31 and use int64.
constexpr int64_t kMaxAxis = int64_t{1} << 30;

inline kernels::Padding parse_padding(const char* op, c10::string_view padding) {
  if (padding == "border") return kernels::Padding::kBorder;
  if (padding == "zeros") return kernels::Padding::kZeros;
  if (padding == "fill") return kernels::Padding::kFill;
  TORCH_CHECK_VALUE(false, "torchlite.", op, ": `padding` must be one of \"border\", \"zeros\", \"fill\", got \"",
                    std::string(padding.data(), padding.size()), "\"");
}

inline void check_noise_std(const char* op, double noise_std) {
  TORCH_CHECK_VALUE(std::isfinite(noise_std) && noise_std >= 0, "torchlite.", op,
                    ": `noise_std` must be a finite number >= 0, got ", noise_std);
}

inline void check_axes(const char* op, const char* arg, at::IntArrayRef sizes) {
  for (auto s : sizes) {
    TORCH_CHECK(s <= kMaxAxis, "torchlite.", op, ": `", arg, "` spatial sizes must be at most 2^30, got ", sizes);
  }
}

// affine3d (K = 3) / affine2d (K = 2): input (N, C, spatial...), theta (N, K, K+1).
inline void check_affine(const char* op, int K, const at::Tensor& input, const at::Tensor& theta, double fill,
                         double noise_std) {
  checks::check_dim(op, "input", input, K + 2, K == 3 ? "(N, C, D, H, W)" : "(N, C, H, W)");
  checks::check_dtype(op, "input", input, {at::kFloat, at::kHalf, at::kBFloat16});
  checks::check_dim(op, "theta", theta, 3, K == 3 ? "(N, 3, 4)" : "(N, 2, 3)");
  checks::check_dtype(op, "theta", theta, {at::kFloat, at::kDouble});
  checks::check_same_device(op, "theta", theta, "input", input);
  TORCH_CHECK(theta.size(1) == K && theta.size(2) == K + 1, "torchlite.", op, ": `theta` must have shape (N, ", K,
              ", ", K + 1, "), got ", theta.sizes());
  TORCH_CHECK(theta.size(0) == input.size(0), "torchlite.", op, ": `theta` has ", theta.size(0),
              " samples but `input` has ", input.size(0), " (their first dimensions must match)");
  check_axes(op, "input", input.sizes().slice(2));
  TORCH_CHECK_VALUE(std::isfinite(fill), "torchlite.", op, ": `fill` must be finite, got ", fill);
  check_noise_std(op, noise_std);
}

struct Clip {
  bool enabled = false;
  float lo = 0.f, hi = 0.f;
};

inline Clip parse_clip(const char* op, c10::optional<at::ArrayRef<double>> clip) {
  if (!clip.has_value()) return {};
  TORCH_CHECK_VALUE(clip->size() == 2, "torchlite.", op, ": `clip` must be [lo, hi], got ", clip->size(),
                    " values");
  const double lo = (*clip)[0], hi = (*clip)[1];
  TORCH_CHECK_VALUE(!std::isnan(lo) && !std::isnan(hi) && lo <= hi, "torchlite.", op,
                    ": `clip` must be [lo, hi] with lo <= hi, got [", lo, ", ", hi, "]");
  return {true, static_cast<float>(lo), static_cast<float>(hi)};
}

inline void check_sample_patches(const at::Tensor& volume, const at::Tensor& centers, const at::Tensor& theta,
                                 at::IntArrayRef size, double fill, double noise_std) {
  const char* op = "sample_patches3d";
  checks::check_dim(op, "volume", volume, 3, "(D, H, W)");
  checks::check_dtype(op, "volume", volume, {at::kShort, at::kFloat});
  checks::check_dim(op, "centers", centers, 2, "(N, 3)");
  checks::check_dtype(op, "centers", centers, {at::kLong, at::kInt, at::kFloat, at::kDouble});
  TORCH_CHECK(centers.size(1) == 3, "torchlite.", op, ": `centers` must have shape (N, 3) (index, row, column), got ",
              centers.sizes());
  checks::check_dim(op, "theta", theta, 3, "(N, 3, 4)");
  checks::check_dtype(op, "theta", theta, {at::kFloat, at::kDouble});
  TORCH_CHECK(theta.size(1) == 3 && theta.size(2) == 4, "torchlite.", op, ": `theta` must have shape (N, 3, 4), got ",
              theta.sizes());
  TORCH_CHECK(theta.size(0) == centers.size(0), "torchlite.", op, ": `theta` has ", theta.size(0),
              " samples but `centers` has ", centers.size(0), " (their first dimensions must match)");
  checks::check_same_device(op, "centers", centers, "volume", volume);
  checks::check_same_device(op, "theta", theta, "volume", volume);
  checks::check_size3(op, size);
  check_axes(op, "volume", volume.sizes());
  check_axes(op, "size", size);
  TORCH_CHECK_VALUE(std::isfinite(fill), "torchlite.", op, ": `fill` must be finite, got ", fill);
  check_noise_std(op, noise_std);
}

}  // namespace sampling
}  // namespace torchlite
