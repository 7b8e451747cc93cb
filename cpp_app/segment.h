// Whole-scan segmentation, as torchlite/analysis/segment.py does it: every
// slice with `context_slices` slices each side (indices clamped at the scan's
// ends), HU clipped, padded with air to the U-Net's size multiple, a batch of
// slices per call, the output cropped back.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "manifest.h"
#include "models.h"

namespace torchlite::app {

// Nodule probability of every voxel of (D, H, W) `volume` (int16 or float32):
// (D, H, W) float32, contiguous, on the CPU.
at::Tensor segment_volume(const at::Tensor& volume, Model& seg, const ModelEntry& entry,
                          const PipelineConstants& pipeline, int64_t batch_size, c10::Device device);

}  // namespace torchlite::app
