// manifest.json, written by `torchlite export`: which model files exist, what
// each model takes and returns, and every constant of the analysis pipeline.
// torchlite-app takes all of them from here (none is repeated in C++), so a
// change on the Python side (torchlite/export/manifest.py) reaches it.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "json.h"

namespace torchlite::app {

// "<manifest path>: <field path>: <reason>", e.g.
// "exported/manifest.json: pipeline.grouping.threshold: expected a number, got a string".
class ManifestError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

inline constexpr int kManifestFormatVersion = 1;

// A 3x3x3 neighbourhood (scipy's structuring element), indexed [i][r][c].
using Structure = std::array<std::array<std::array<bool, 3>, 3>, 3>;

struct ModelEntry {
  std::map<std::string, std::string> files;  // format -> file name, relative to the manifest's folder
  int64_t channels = 0;                      // input.shape[1] (seg: 2 * context + 1; cls/mal: 1)
  std::vector<int64_t> fixed_shape;          // input.shape, -1 for dynamic dimensions
  std::map<int, int64_t> multiple_of;        // input dim -> size multiple (seg: H and W)
  int output = 0;                            // use.output: which returned tensor
  int64_t select = 0;                        // use.channel (seg) or use.index (cls, mal)
};

struct PipelineConstants {
  double hu_lo = 0.0, hu_hi = 0.0;  // hu_clip
  int64_t context_slices = 0;
  int64_t seg_batch_size = 0;
  double threshold = 0.0;
  int64_t erosion_iterations = 0;
  Structure erosion_structure{};
  bool erosion_border_value = false;
  Structure labelling_structure{};
  double weight_lo = 0.0, weight_hi = 0.0, weight_offset = 0.0;  // center-of-mass weight
  std::array<int64_t, 3> crop_size{};
  double crop_fill = 0.0;
  double crop_clip_lo = 0.0, crop_clip_hi = 0.0;
  int64_t cls_batch_size = 0;
};

struct Manifest {
  std::filesystem::path path;
  std::string torchlite_version;
  std::string torch_version;
  std::string device;  // what the models were exported for
  std::map<std::string, ModelEntry> models;  // "seg", "cls", optional "mal"
  PipelineConstants pipeline;

  // The file of `task` in `format` ("torchscript", "aoti"), or a ManifestError
  // saying the export has no such file.
  std::filesystem::path model_file(const std::string& task, const std::string& format) const;

  // Whether every model of the export has a file in `format`.
  bool has_format(const std::string& format) const;
};

Manifest read_manifest(const std::filesystem::path& path);

}  // namespace torchlite::app
