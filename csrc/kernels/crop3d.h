// crop3d arithmetic shared by the CPU and CUDA kernels.
//
// A patch axis of length `size` starting at volume index `start` splits into
// [0, lo) outside, [lo, hi) inside, [hi, size) outside. Working with that
// span, rather than testing every voxel against the volume, lets the CPU
// kernel run a branch-free convert+clip loop over the inside and fill the
// rest; the CUDA kernel tests one voxel against the same span, so both read
// exactly the same voxels.
//
// Centers are arbitrary int64 (the schema admits any value), so every step
// below is written so that it cannot overflow, whatever the center, size and
// dimension: a wrapped index would turn into an out-of-bounds read.
#pragma once

#include "kernels/common.h"

#include <cstdint>

namespace torchlite {
namespace kernels {

constexpr int64_t kInt64Min = INT64_MIN;

struct CropSpan {
  int64_t start;  // volume index of patch offset 0 (meaningful when lo < hi)
  int64_t lo;     // first patch offset inside the volume
  int64_t hi;     // one past the last; lo == hi == 0 when nothing is inside
};

// center - size/2 without wrapping: saturates at INT64_MIN, which is as
// far outside as any start can be. size > 0, so size/2 >= 0.
TL_HOST_DEVICE int64_t crop_start(int64_t center, int64_t size) {
  const int64_t half = size / 2;
  return center < kInt64Min + half ? kInt64Min : center - half;
}

// The inside span of one axis. dim >= 0, size > 0. With clamp, the window is
// shifted inward as the book's getRawCandidate does (start in
// [0, max(dim - size, 0)]); only a size larger than dim leaves an outside part.
TL_HOST_DEVICE CropSpan crop_span(int64_t center, int64_t size, int64_t dim,
                                  bool clamp) {
  int64_t start = crop_start(center, size);
  if (clamp) {
    // dim - size cannot overflow: dim >= 0 and size > 0.
    start = tl_clamp<int64_t>(start, 0, tl_max<int64_t>(dim - size, 0));
  }
  // Entirely outside: start <= -size (checked as start < 1 - size, which
  // cannot wrap) or start >= dim.
  if (start < 1 - size || start >= dim) {
    return CropSpan{start, 0, 0};
  }
  // Here -size < start < dim, so -start and dim - start (when start > dim -
  // size, i.e. the result is < size) are representable.
  const int64_t lo = start < 0 ? -start : 0;
  const int64_t hi = start <= dim - size ? size : dim - start;
  return CropSpan{start, lo, hi};
}

TL_HOST_DEVICE bool crop_inside(const CropSpan& s, int64_t offset) {
  return offset >= s.lo && offset < s.hi;
}

// A voxel read from the scan: converted to float32, then clipped to
// [clip_lo, clip_hi] (pass -inf/+inf for no clip; see clip_value).
template <typename T>
TL_HOST_DEVICE float crop_value(T raw, float clip_lo, float clip_hi) {
  return clip_value(static_cast<float>(raw), clip_lo, clip_hi);
}

}  // namespace kernels
}  // namespace torchlite
