// crop3d on the CPU: tasks are ranges of output rows (patch n, slice z, row y).
//
// A row's w voxels split into an outside head, an inside span and an outside
// tail (kernels/crop3d.h). The inside span is a tight convert+clip loop with
// no bounds test per voxel, contiguous in the common case (unit stride along
// W), so the compiler vectorizes it; the outside parts are plain fills. The
// volume is read through its strides, never copied, so a memory-mapped scan
// is cropped in place and only the pages under the patches are touched.
//
// What the time goes to (measured on the benchmark workload, 256 patches of
// 32x48x48 from a 157 MB int16 scan): each patch row is ~100 bytes in a new
// place in a scan far larger than the caches, 1 KB past the previous row, so
// every 4th row lands on a new page and the hardware prefetcher never gets
// going; the loop then waits on memory for each row in turn. Software
// prefetching a couple of kilobytes of rows ahead made it ~3x faster. A fresh
// 75 MB output costs more than the crop itself in page faults, hence the
// output cache (memory/output_pool.h) and the out= variant.
#include "memory/output_pool.h"
#include "crop3d_args.h"
#include "kernels/crop3d.h"

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>

#if defined(__GNUC__)
// always_inline: GCC's mod/ref analysis takes a function whose only effect
// is __builtin_prefetch for side-effect free and deletes the calls to it.
#define TL_ALWAYS_INLINE __attribute__((always_inline)) inline
#define TL_PREFETCH(addr) __builtin_prefetch(addr)
#else
#define TL_ALWAYS_INLINE inline
#define TL_PREFETCH(addr) ((void)(addr))
#endif

namespace torchlite {
namespace {

using kernels::CropSpan;

constexpr const char* kOp = "crop3d";
constexpr const char* kOpOut = "crop3d_out";

// Least output voxels per thread: a smaller crop runs on one thread, where
// waking the others would cost more than it saves.
constexpr int64_t kVoxelsPerTask = 1 << 15;

// Source bytes to prefetch ahead of the row being converted (measured: 4
// rows ahead was 1.4x slower than 12, beyond ~16 rows of 96 B it is flat).
constexpr int64_t kPrefetchBytes = 2048;


// The clip bounds come by value: read through a pointer they could alias the
// float stores to dst as far as the compiler knows, forcing a reload per
// voxel and blocking vectorization.
template <typename T>
void convert_span(const T* src, int64_t stride, int64_t n, float* dst,
                  float clip_lo, float clip_hi) {
  if (stride == 1) {
    for (int64_t i = 0; i < n; ++i) {
      dst[i] = kernels::crop_value(src[i], clip_lo, clip_hi);
    }
  } else {
    for (int64_t i = 0; i < n; ++i) {
      dst[i] = kernels::crop_value(src[i * stride], clip_lo, clip_hi);
    }
  }
}

// Position of an output row (patch n, slice z, row y) and the spans of
// patch n, recomputed only when a walk along the rows enters a new patch.
struct RowPos {
  int64_t n, z, y;
  CropSpan sz, sy, sx;
};

template <typename T>
struct RowCropper {
  const T* vol;
  int64_t sD, sH, sW;
  int64_t d, h, w;
  int64_t dims[3];
  float fill, clip_lo, clip_hi;
  const int64_t* centers;  // (n_patches, 3), strides cs0, cs1
  int64_t cs0, cs1, n_patches;
  bool clamp;

  void load_spans(RowPos& p) const {
    if (p.n >= n_patches) return;  // walked past the last row: nothing to read
    const int64_t* c = centers + p.n * cs0;
    p.sz = kernels::crop_span(c[0], d, dims[0], clamp);
    p.sy = kernels::crop_span(c[cs1], h, dims[1], clamp);
    p.sx = kernels::crop_span(c[2 * cs1], w, dims[2], clamp);
  }

  RowPos pos(int64_t r) const {
    RowPos p{r / (h * d), (r / h) % d, r % h, {}, {}, {}};
    load_spans(p);
    return p;
  }

  void next(RowPos& p) const {
    if (++p.y == h) {
      p.y = 0;
      if (++p.z == d) {
        p.z = 0;
        ++p.n;
        load_spans(p);
      }
    }
  }

  // The first volume voxel of row p's inside span, or nullptr when the whole
  // row is outside. Every index is then inside [0, dim), so the offset lies
  // within the volume's extent and cannot overflow.
  const T* source(const RowPos& p) const {
    if (!kernels::crop_inside(p.sz, p.z) || !kernels::crop_inside(p.sy, p.y) ||
        p.sx.lo >= p.sx.hi) {
      return nullptr;
    }
    return vol + (p.sz.start + p.z) * sD + (p.sy.start + p.y) * sH +
           (p.sx.start + p.sx.lo) * sW;
  }

  TL_ALWAYS_INLINE void prefetch(const RowPos& p) const {
    const T* src = source(p);
    if (src == nullptr) return;
    const char* first = reinterpret_cast<const char*>(src);
    const int64_t stride_bytes = sW * int64_t(sizeof(T));
    const int64_t last = (p.sx.hi - p.sx.lo - 1) * stride_bytes;
    // One prefetch per cache line, or per voxel when voxels are lines apart
    // (a transposed view).
    const int64_t step = std::max<int64_t>(stride_bytes, 64);
    for (int64_t off = 0; off < last; off += step) TL_PREFETCH(first + off);
    TL_PREFETCH(first + last);
  }

  void operator()(const RowPos& p, float* dst) const {
    const T* src = source(p);
    if (src == nullptr) {
      std::fill_n(dst, w, fill);
      return;
    }
    const CropSpan& sx = p.sx;
    std::fill_n(dst, sx.lo, fill);
    convert_span(src, sW, sx.hi - sx.lo, dst + sx.lo, clip_lo, clip_hi);
    std::fill_n(dst + sx.hi, w - sx.hi, fill);
  }
};

template <typename T>
void crop_rows(const at::Tensor& volume, const at::Tensor& centers,
               const crop3d::Args& a, float* out) {
  const RowCropper<T> crop{volume.const_data_ptr<T>(),
                           volume.stride(0), volume.stride(1), volume.stride(2),
                           a.d, a.h, a.w,
                           {volume.size(0), volume.size(1), volume.size(2)},
                           a.fill, a.clip_lo, a.clip_hi,
                           centers.const_data_ptr<int64_t>(),
                           centers.stride(0), centers.stride(1), centers.size(0),
                           a.clamp};
  const int64_t w = a.w;
  const int64_t rows = centers.size(0) * a.d * a.h;
  const int64_t grain = std::max<int64_t>(1, kVoxelsPerTask / w);
  const int64_t row_bytes = w * int64_t(sizeof(T));
  const int64_t ahead = std::clamp<int64_t>(kPrefetchBytes / row_bytes, 1, 32);
  // This loop is also the first touch of a fresh output, so its pages are
  // faulted in by all threads at once.
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    RowPos p = crop.pos(begin);
    RowPos q = p;  // the row `ahead` rows in front of p, being prefetched
    int64_t rq = begin;
    for (; rq < std::min(end, begin + ahead); ++rq) {
      crop.prefetch(q);
      crop.next(q);
    }
    for (int64_t r = begin; r < end; ++r, crop.next(p)) {
      if (rq < end) {
        crop.prefetch(q);
        crop.next(q);
        ++rq;
      }
      crop(p, out + r * w);
    }
  });
}

// Asks Linux to back a fresh output with 2 MB pages before its first touch:
// one fault per 2 MB instead of 512, which for a 75 MB batch is most of the
// cost of a fresh output. The range is rounded inward to whole 2 MB pages,
// so only this tensor's own memory is advised; torch does the same for all
// allocations under THP_MEM_ALLOC_ENABLE=1. Failure only loses the speed-up.
void crop3d_into(const at::Tensor& volume, const at::Tensor& centers,
                 const crop3d::Args& a, at::Tensor& out) {
  if (out.numel() == 0) return;
  float* dst = out.mutable_data_ptr<float>();
  if (volume.scalar_type() == at::kShort) {
    crop_rows<int16_t>(volume, centers, a, dst);
  } else {
    crop_rows<float>(volume, centers, a, dst);
  }
}

at::Tensor crop3d_cpu(const at::Tensor& volume, const at::Tensor& centers,
                      at::IntArrayRef size, double fill, bool clamp,
                      std::optional<at::ArrayRef<double>> clip) {
  const auto a = crop3d::check_args(kOp, volume, centers, size, fill, clamp, clip);
  at::Tensor out = cpu::empty_output(crop3d::out_shape(centers, a), at::kFloat);
  crop3d_into(volume, centers, a, out);
  return out;
}

void crop3d_out_cpu(const at::Tensor& volume, const at::Tensor& centers,
                    at::IntArrayRef size, double fill, bool clamp,
                    std::optional<at::ArrayRef<double>> clip, at::Tensor out) {
  const auto a = crop3d::check_args(kOpOut, volume, centers, size, fill, clamp, clip);
  crop3d::check_out(kOpOut, out, volume, centers, a);
  crop3d_into(volume, centers, a, out);
}

}  // namespace

TORCH_LIBRARY_IMPL(torchlite, CPU, m) {
  m.impl("crop3d", &crop3d_cpu);
  m.impl("crop3d_out", &crop3d_out_cpu);
}

}  // namespace torchlite
