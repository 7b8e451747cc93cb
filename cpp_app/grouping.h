// From a probability volume to candidate nodules, by the rules of
// torchlite/analysis/grouping.py (their constants come from the manifest):
//   mask = probability > threshold (compared in float32, as numpy compares a
//          float32 array with a Python float);
//   `erosion_iterations` binary erosions with the manifest's structure (the
//          in-plane 4-neighbour cross), voxels beyond the scan = border value;
//   connected components with the labelling structure (6 face neighbours),
//          numbered in scan order of each group's first voxel (scipy's order);
//   each group's center of mass weighted by clip(HU) + offset, in float64;
//   equivalent-sphere diameter with the eroded layer added back.
// Plain loops over a uint8 mask; labelling is a one-pass union-find over
// two slices of provisional labels (no recursion, no full-size label array).
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <vector>

#include "manifest.h"

namespace torchlite::app {

struct VoxelGroup {
  std::array<double, 3> center_irc{};  // weighted center of mass, voxel coordinates
  int64_t voxels = 0;                  // voxels in the eroded group
  double diameter_mm = 0.0;
};

// `probability` (D, H, W) float32 and `hu` (D, H, W) int16 or float32, both
// on the CPU; spacing in I, R, C order (mm).
std::vector<VoxelGroup> group_voxels(const at::Tensor& probability, const at::Tensor& hu,
                                     const std::array<double, 3>& spacing_irc, const PipelineConstants& pipeline,
                                     double threshold);

// Binary erosion of a (D, H, W) uint8 mask, in place (exposed for tests of
// the rules; group_voxels calls it).
void erode(std::vector<uint8_t>& mask, const std::array<int64_t, 3>& shape, const Structure& structure,
           bool border_value, int64_t iterations);

// The voxel a crop is centered on: round half up, floor(c + 0.5) per axis.
std::array<int64_t, 3> nearest_voxel(const std::array<double, 3>& center_irc);

double estimate_diameter_mm(int64_t voxels, const std::array<double, 3>& spacing_irc);

}  // namespace torchlite::app
