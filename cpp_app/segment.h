// Whole-scan segmentation, as torchlite/analysis/segment.py does it: every
// slice with `context_slices` slices each side (indices clamped at the scan's
// ends), HU clipped, padded with air to the U-Net's size multiple, a batch of
// slices per call, the output cropped back.
// With a box (the lung region, lung_region.h): only the box's slices, and of
// each only an in-plane window, the box's rows and columns widened to start on
// a multiple of the U-Net's size multiple and to span one within the scan
// (padded with air past the scan's edge), as segment.py's _grid_window; the
// context slices still come from the whole scan. Probability 0 outside the box.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <array>
#include <optional>

#include "manifest.h"
#include "models.h"

namespace torchlite::app {

// Half-open (z0, z1, y0, y1, x0, x1).
using VoxelBox = std::array<int64_t, 6>;

// Nodule probability of every voxel of (D, H, W) `volume` (int16 or float32):
// (D, H, W) float32, contiguous, on the CPU. `box`: segment only there (non-empty,
// inside the scan), probability 0 elsewhere; none: every voxel.
at::Tensor segment_volume(const at::Tensor& volume, Model& seg, const ModelEntry& entry,
                          const PipelineConstants& pipeline, int64_t batch_size, c10::Device device,
                          const std::optional<VoxelBox>& box = std::nullopt);

// [lo, hi) widened to start on a multiple of `multiple` and to span one within
// `size`: {start, stop, air padding still needed at the end} (segment.py's _grid_window).
std::array<int64_t, 3> grid_window(int64_t lo, int64_t hi, int64_t size, int64_t multiple);

}  // namespace torchlite::app
