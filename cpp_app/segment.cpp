#include "segment.h"

#include <ATen/ATen.h>

#include <algorithm>

namespace torchlite::app {

at::Tensor segment_volume(const at::Tensor& volume, Model& seg, const ModelEntry& entry,
                          const PipelineConstants& pipeline, int64_t batch_size, c10::Device device) {
  TORCH_CHECK(volume.dim() == 3 && volume.numel() > 0, "segment_volume: expected a non-empty (D, H, W) scan, got ",
              volume.sizes());
  TORCH_CHECK(batch_size >= 1, "segment_volume: batch size must be >= 1, got ", batch_size);
  const int64_t depth = volume.size(0), height = volume.size(1), width = volume.size(2);
  const auto multiple = [&](int dim) {
    const auto it = entry.multiple_of.find(dim);
    return it == entry.multiple_of.end() ? int64_t{1} : it->second;
  };
  // Pad to the next multiple (Python: -height % SIDE_MULTIPLE).
  const int64_t pad_h = (multiple(2) - height % multiple(2)) % multiple(2);
  const int64_t pad_w = (multiple(3) - width % multiple(3)) % multiple(3);
  const int64_t context = pipeline.context_slices;
  const at::Tensor offsets = at::arange(-context, context + 1, at::kLong);

  at::Tensor out = at::empty({depth, height, width}, at::kFloat);
  for (int64_t start = 0; start < depth; start += batch_size) {
    const int64_t stop = std::min(start + batch_size, depth);
    // (n, 2 * context + 1) slice indices, clamped: one gather builds the batch.
    const at::Tensor idx = (at::arange(start, stop, at::kLong).unsqueeze(1) + offsets.unsqueeze(0)).clamp_(0, depth - 1);
    at::Tensor x = volume.index_select(0, idx.flatten())
                       .to(at::kFloat)
                       .clamp_(pipeline.hu_lo, pipeline.hu_hi)
                       .view({stop - start, idx.size(1), height, width});
    if (pad_h || pad_w) {
      // Air after clipping: the lower end of the HU window, as the Python side pads.
      x = at::constant_pad_nd(x, {0, pad_w, 0, pad_h}, pipeline.hu_lo);
    }
    const at::Tensor y = seg.run(x.to(device));
    TORCH_CHECK(y.dim() == 4 && y.size(0) == stop - start && y.size(2) >= height && y.size(3) >= width,
                "seg model returned shape ", y.sizes(), " for input ", x.sizes());
    out.slice(0, start, stop).copy_(y.select(1, entry.select).slice(1, 0, height).slice(2, 0, width));
  }
  return out;
}

}  // namespace torchlite::app
