// crop3d / crop3d_out argument validation, shared by the CPU and CUDA
// launchers (host code only) so both reject exactly the same calls with the
// same messages. The Python fake kernel (torchlite/ops/crop.py) mirrors it.
#pragma once

#include "checks.h"

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <c10/util/OptionalArrayRef.h>

#include <cstdint>
#include <limits>
#include <optional>
#include <vector>

namespace torchlite {
namespace crop3d {

struct Args {
  int64_t d, h, w;  // patch size
  float fill;
  float clip_lo, clip_hi;  // -inf/+inf when no clip: NaN-preserving no-op
  bool clamp;
};

inline Args check_args(const char* op, const at::Tensor& volume,
                       const at::Tensor& centers, at::IntArrayRef size,
                       double fill, bool clamp,
                       const std::optional<at::ArrayRef<double>>& clip) {
  using checks::check_dim;
  using checks::check_dtype;
  check_dtype(op, "volume", volume, {at::kShort, at::kFloat});
  check_dim(op, "volume", volume, 3, "(D, H, W)");
  check_dtype(op, "centers", centers, {at::kLong});
  TORCH_CHECK(centers.dim() == 2 && centers.size(1) == 3, "torchlite.", op,
              ": `centers` must have shape (N, 3) (index, row, column), got ",
              centers.sizes());
  checks::check_same_device(op, "centers", centers, "volume", volume);
  checks::check_size3(op, size);
  Args a{size[0], size[1], size[2], static_cast<float>(fill),
         -std::numeric_limits<float>::infinity(),
         std::numeric_limits<float>::infinity(), clamp};
  if (clip.has_value()) {
    const auto c = *clip;
    TORCH_CHECK(c.size() == 2, "torchlite.", op,
                ": `clip` must have 2 entries [lo, hi], got ", c.size());
    // Written so that a NaN bound fails too.
    TORCH_CHECK(c[0] <= c[1], "torchlite.", op,
                ": `clip` must satisfy lo <= hi, got [", c[0], ", ", c[1], "]");
    a.clip_lo = static_cast<float>(c[0]);
    a.clip_hi = static_cast<float>(c[1]);
  }
  return a;
}

inline std::vector<int64_t> out_shape(const at::Tensor& centers, const Args& a) {
  return {centers.size(0), 1, a.d, a.h, a.w};
}

inline void check_out(const char* op, const at::Tensor& out,
                      const at::Tensor& volume, const at::Tensor& centers,
                      const Args& a) {
  checks::check_dtype(op, "out", out, {at::kFloat});
  checks::check_same_device(op, "out", out, "volume", volume);
  const auto want = out_shape(centers, a);
  TORCH_CHECK(out.sizes() == at::IntArrayRef(want), "torchlite.", op,
              ": `out` must have shape (N, 1, d, h, w) = ", at::IntArrayRef(want),
              ", got ", out.sizes());
  TORCH_CHECK(out.is_contiguous(), "torchlite.", op,
              ": `out` must be contiguous, got strides ", out.strides());
  // Writing into memory we are reading from would make the result depend on
  // the order of the writes.
  if (out.numel() > 0) {
    TORCH_CHECK(!out.storage().is_alias_of(volume.storage()) &&
                    !out.storage().is_alias_of(centers.storage()),
                "torchlite.", op,
                ": `out` must not share memory with `volume` or `centers`");
  }
}

}  // namespace crop3d
}  // namespace torchlite
