// Where the lungs are: the box of a scan that the U-Net needs to see, as
// torchlite/analysis/lung_region.py's lung_box finds it (the same box,
// integer for integer, on the same scan):
//   on a copy subsampled to about kStepMm per voxel (every step-th voxel per
//   axis; in-plane at least kMinSide voxels across), air is HU < kAirHu;
//   per slice, the 4-connected air components touching the slice's border
//   are outside air and dropped; what is left, 26-connected in 3D, is air
//   inside the body; components of at least kMinRelativeSize of the largest
//   are kept; their box, widened by step - 1 and ceil(margin / spacing)
//   voxels per side, clamped to the scan, is the lung box.
// Fallback (found = false, the whole scan, with the reason Python gives): no
// air, no air inside the body, a largest component under kMinLungMl, or a
// sizeable border component whose mean HU (clipped below at -1024) is above
// kOutsideAirMaxHu (lungs cut by the field of view).
// Plain loops over a uint8 copy of the subsampled air; the components are
// found by flood fill (an explicit stack, no recursion).
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <string>

namespace torchlite::app {

constexpr double kAirHu = -400;              // below: air or aerated lung
constexpr double kOutsideAirMaxHu = -950;    // a border air component with a mean above this is lung, cut
constexpr double kMinLungMl = 20.0;          // the largest inside-air component must hold this
constexpr double kMinRelativeSize = 0.02;    // smaller inside-air components (share of the largest) are dropped
constexpr double kMinCutShare = 0.01;        // a lung-like border component counts from this share ...
constexpr int64_t kMinCutVoxels = 4;         // ... and this many subsampled voxels
constexpr double kStepMm = 2.5;              // subsampling target (voxel side, mm)
constexpr int64_t kMinSide = 48;             // ... but never fewer voxels than this in-plane
constexpr double kMarginMm = 10.0;

// Half-open voxel box (I, R, C) of the scan holding the lungs, margin included.
struct LungBox {
  int64_t z0 = 0, z1 = 0, y0 = 0, y1 = 0, x0 = 0, x1 = 0;
  std::array<int64_t, 3> shape{};  // the scan's (D, H, W)
  bool found = false;              // false: nothing plausible was found and the box is the whole scan
  std::string reason;              // why the whole scan, when not found

  static LungBox whole(const std::array<int64_t, 3>& shape, std::string reason);
  bool is_whole() const;
  double fraction() const;  // voxels in the box / voxels in the scan
  // As LungBox.to_json: {"box_irc": [z0, z1, y0, y1, x0, x1], "found": ..., "fraction": round(f, 4)[, "reason": ...]}
  std::string to_json() const;
};

// The box of (D, H, W) HU `volume` (int16 or float32, on the CPU) holding its
// lungs; spacing in I, R, C order (mm), each finite and > 0; margin >= 0.
LungBox lung_box(const at::Tensor& volume, const std::array<double, 3>& spacing_irc, double margin_mm = kMarginMm);

}  // namespace torchlite::app
