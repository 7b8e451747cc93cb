// One scan, end to end, as torchlite/analysis/pipeline.py's analyze_scan:
// read -> lung region -> segment -> group -> crop3d + classify -> malignancy.
// By default (AnalysisConfig::lung_region) the U-Net sees only the box of the
// scan holding the lungs (lung_region.h; the whole scan when none is found);
// the report records the box, and its search as the "lung_region" stage.
#pragma once

#include <c10/core/Device.h>

#include <array>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "lung_region.h"
#include "manifest.h"
#include "models.h"

namespace torchlite::app {

struct AnalysisConfig {
  double threshold = 0.0;      // segmentation probability above which a voxel is nodule
  int64_t seg_batch_size = 0;  // slices per U-Net call
  int64_t cls_batch_size = 0;  // crops per classifier call
  c10::Device device = c10::Device(c10::kCPU);
  bool lung_region = true;  // segment only the box holding the lungs (false: every voxel, --whole-scan)
};

struct ScanDetection {
  std::array<double, 3> center_irc{};  // weighted center of mass, voxel coordinates
  std::array<double, 3> center_xyz{};  // patient millimetres
  double probability = 0.0;            // nodule probability
  std::optional<double> malignancy;    // none without a malignancy model
  double diameter_mm = 0.0;            // rounded to 3 decimals, as the Python report
  int64_t voxels = 0;
};

struct ScanAnalysis {
  std::string series_uid;
  std::string path;
  std::array<int64_t, 3> shape{};         // (I, R, C)
  std::array<double, 3> spacing_xyz{};
  std::vector<ScanDetection> detections;  // by decreasing nodule probability
  std::optional<LungBox> lung_region;     // the box segmented; none: every voxel (lung region off)
  std::vector<std::pair<std::string, double>> seconds;  // per stage, then "total"
};

// irc -> xyz: xyz = origin + direction @ (cri * spacing), cri = irc reversed,
// direction row-major (torchlite/data/geometry.py).
std::array<double, 3> irc_to_xyz(const std::array<double, 3>& irc, const std::array<double, 3>& origin,
                                 const std::array<double, 3>& spacing, const std::array<double, 9>& direction);

// Raises MetaImageError for a scan the reader refuses.
ScanAnalysis analyze_scan(const std::filesystem::path& mhd, const std::string& series_uid, Models& models,
                          const Manifest& manifest, const AnalysisConfig& config);

}  // namespace torchlite::app
