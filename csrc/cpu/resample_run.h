// How the CPU resampling engine splits an operator call into work items and
// spreads them over threads (see resample.h, resample_plane.h).
#pragma once

#include "cpu/resample.h"
#include "cpu/resample_plane.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>

namespace torchlite {
namespace cpu {

// Planes larger than this are split into tiles (too few tasks otherwise).
constexpr int64_t kMaxPlane = 1 << 16;

// --- Work items ---------------------------------------------------------------
// A work item is one output plane of one image in 3-D (planes up to
// kMaxPlane voxels), otherwise a tile of kTile voxels.

template <int K>
struct Items {
  int64_t per_image = 0;
  int64_t length = 0;  // spatial voxels per item (the last one may be shorter)
  bool planes = false;
};

template <int K>
inline Items<K> work_items(const Job<K>& job) {
  int64_t spatial = 1;
  for (int i = 0; i < K; ++i) spatial *= job.out_size[i];
  if constexpr (K == 3) {
    const int64_t plane = static_cast<int64_t>(job.out_size[1]) * job.out_size[2];
    if (plane > 0 && plane <= kMaxPlane) return {job.out_size[0], plane, true};
  }
  return {(spatial + kTile - 1) / kTile, kTile, false};
}

// Items [i0, i1) of the job.
template <int K, Padding P, bool Clip, typename src_t, typename out_t>
inline void run_items(const Job<K>& job, const src_t* src, out_t* out, int64_t i0, int64_t i1) {
  int64_t spatial = 1;
  for (int i = 0; i < K; ++i) spatial *= job.out_size[i];
  const Items<K> items = work_items(job);
  TilePlan<K> plan;
  PlaneScratch scratch;
  for (int64_t item = i0; item < i1; ++item) {
    const int64_t n_img = item / items.per_image, seg = item % items.per_image;
    const int64_t s0 = seg * items.length;
    const int64_t len = std::min(items.length, spatial - s0);
    if constexpr (K == 3) {
      if (items.planes &&
          run_plane<P, Clip>(job, n_img, static_cast<int32_t>(seg), src, out, scratch)) {
        continue;
      }
    }
    run_span<K, P, Clip>(job, n_img, s0, len, src, out, plan);
  }
}

// Calls work(i0, i1) on ranges of work items in parallel.
template <int K, typename Work>
void parallel_items(const Job<K>& job, const Work& work) {
  int64_t spatial = 1;
  for (int i = 0; i < K; ++i) spatial *= job.out_size[i];
  if (job.images == 0 || job.channels == 0 || spatial == 0) return;
  const Items<K> items = work_items(job);
  // ~16k output voxels per task: enough work to amortize a task's start.
  const int64_t grain = std::max<int64_t>(1, 16384 / (items.length * job.channels));
  at::parallel_for(0, job.images * items.per_image, grain, work);
}

}  // namespace cpu
}  // namespace torchlite
