// What torchlite-app writes, in the formats `torchlite analyze` writes:
// the detections CSV (torchlite/analysis/detections.py:
// seriesuid,coordX,coordY,coordZ,probability,malignancy, floats as Python's
// repr, malignancy empty without a malignancy model) and the JSON report
// ({"scans": [ScanAnalysis.to_json()...], "seconds", "models", ...}; per scan
// "lung_region": LungBox.to_json() of the box segmented, or null).
// Both are written to a temporary name beside the target and renamed.
#pragma once

#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "pipeline.h"

namespace torchlite::app {

class OutputError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct ScanFailure {
  std::string series_uid;
  std::string path;
  std::string error;
};

struct ReportInfo {
  std::string torchlite_version;  // of the export (manifest)
  std::string device;
  std::string format;  // torchscript | aoti
  std::string manifest_path;
  std::vector<std::pair<std::string, std::string>> model_files;  // task -> file
  double threshold = 0.0;
  int64_t erosion = 0;
  int64_t seg_batch_size = 0;
  int64_t cls_batch_size = 0;
  bool lung_region = true;  // false: --whole-scan
  int threads = 0;
  double load_models_seconds = 0.0;
  double seconds = 0.0;  // all scans
};

std::string detections_csv(const std::vector<ScanAnalysis>& scans);
std::string report_json(const std::vector<ScanAnalysis>& scans, const std::vector<ScanFailure>& errors,
                        const ReportInfo& info);

// Writes `text` to `path` through a temporary file in the same folder, then
// renames it over `path`: a reader never sees half a file. Raises OutputError.
void write_file_atomically(const std::filesystem::path& path, const std::string& text);

}  // namespace torchlite::app
