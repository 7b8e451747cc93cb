// Nodule and malignancy probabilities of candidate centers, as
// torchlite/analysis/classify.py: crops from the `torchlite::crop3d` operator
// (the one compiled from csrc/, linked in) straight out of the scan, then the
// classifier a batch at a time, the softmax probability of class `use.index`.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "manifest.h"
#include "models.h"

namespace torchlite::app {

// (N, 1, d, h, w) float32 crops of (D, H, W) `volume` at (N, 3) int64 centers.
at::Tensor crop_candidates(const at::Tensor& volume, const at::Tensor& centers_irc, const PipelineConstants& pipeline);

// (N,) float32 on the CPU.
at::Tensor positive_probability(Model& model, const ModelEntry& entry, const at::Tensor& crops, int64_t batch_size,
                                c10::Device device);

}  // namespace torchlite::app
