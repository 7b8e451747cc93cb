#include "segment.h"

#include <ATen/ATen.h>

#include <algorithm>

namespace torchlite::app {

namespace {

int64_t floor_mod(int64_t a, int64_t m) { return ((a % m) + m) % m; }  // Python's a % m, m > 0

// How far an input pixel reaches in the U-Net's output (torchlite.analysis.segment.UNET_REACH):
// the window is read this much wider than the box, so inside the box the output is the whole slice's.
constexpr int64_t kUnetReach = 24;

}  // namespace

std::array<int64_t, 3> grid_window(int64_t lo, int64_t hi, int64_t size, int64_t multiple) {
  const int64_t start = lo - floor_mod(lo, multiple);
  const int64_t stop = std::min(size, hi + floor_mod(-hi, multiple));
  return {start, stop, floor_mod(-(stop - start), multiple)};
}

at::Tensor segment_volume(const at::Tensor& volume, Model& seg, const ModelEntry& entry,
                          const PipelineConstants& pipeline, int64_t batch_size, c10::Device device,
                          const std::optional<VoxelBox>& box) {
  TORCH_CHECK(volume.dim() == 3 && volume.numel() > 0, "segment_volume: expected a non-empty (D, H, W) scan, got ",
              volume.sizes());
  TORCH_CHECK(batch_size >= 1, "segment_volume: batch size must be >= 1, got ", batch_size);
  const int64_t depth = volume.size(0), height = volume.size(1), width = volume.size(2);
  const VoxelBox b = box.value_or(VoxelBox{0, depth, 0, height, 0, width});
  const auto [z0, z1, y0, y1, x0, x1] = b;
  TORCH_CHECK(0 <= z0 && z0 < z1 && z1 <= depth && 0 <= y0 && y0 < y1 && y1 <= height && 0 <= x0 && x0 < x1 &&
                  x1 <= width,
              "segment_volume: box (", z0, ", ", z1, ", ", y0, ", ", y1, ", ", x0, ", ", x1,
              ") must be non-empty and inside the scan ", volume.sizes());
  const auto multiple = [&](int dim) {
    const auto it = entry.multiple_of.find(dim);
    return it == entry.multiple_of.end() ? int64_t{1} : it->second;
  };
  // The in-plane window: on the U-Net's grid, padded with air where the scan ends
  // (the whole slice: pad to the next multiple, Python's -height % SIDE_MULTIPLE).
  const auto [r0, r1, pad_h] =
      grid_window(std::max<int64_t>(0, y0 - kUnetReach), std::min(height, y1 + kUnetReach), height, multiple(2));
  const auto [c0, c1, pad_w] =
      grid_window(std::max<int64_t>(0, x0 - kUnetReach), std::min(width, x1 + kUnetReach), width, multiple(3));
  const bool whole = b == VoxelBox{0, depth, 0, height, 0, width};
  const at::Tensor window = volume.slice(1, r0, r1).slice(2, c0, c1);  // a view: the gather reads only the window
  const int64_t context = pipeline.context_slices;
  const at::Tensor offsets = at::arange(-context, context + 1, at::kLong);

  at::Tensor out = whole ? at::empty({depth, height, width}, at::kFloat) : at::zeros({depth, height, width}, at::kFloat);
  for (int64_t start = z0; start < z1; start += batch_size) {
    const int64_t stop = std::min(start + batch_size, z1);
    // (n, 2 * context + 1) slice indices, clamped to the whole scan: one gather builds the batch.
    const at::Tensor idx = (at::arange(start, stop, at::kLong).unsqueeze(1) + offsets.unsqueeze(0)).clamp_(0, depth - 1);
    at::Tensor x = window.index_select(0, idx.flatten())
                       .to(at::kFloat)
                       .clamp_(pipeline.hu_lo, pipeline.hu_hi)
                       .view({stop - start, idx.size(1), r1 - r0, c1 - c0});
    if (pad_h || pad_w) {
      // Air after clipping: the lower end of the HU window, as the Python side pads.
      x = at::constant_pad_nd(x, {0, pad_w, 0, pad_h}, pipeline.hu_lo);
    }
    const at::Tensor y = seg.run(x.to(device));
    TORCH_CHECK(y.dim() == 4 && y.size(0) == stop - start && y.size(2) >= y1 - r0 && y.size(3) >= x1 - c0,
                "seg model returned shape ", y.sizes(), " for input ", x.sizes());
    out.slice(0, start, stop)
        .slice(1, y0, y1)
        .slice(2, x0, x1)
        .copy_(y.select(1, entry.select).slice(1, y0 - r0, y1 - r0).slice(2, x0 - c0, x1 - c0));
  }
  return out;
}

}  // namespace torchlite::app
