// torchlite-app's command line.
//
//   torchlite-app --models DIR --ct scan.mhd [--ct ...] --out detections.csv
//                 [--format auto|torchscript|aoti] [--device cpu|cuda] [--threads N]
//                 [--report report.json] [--threshold P] [--batch-size N] [--whole-scan]
//
// --models is the folder `torchlite export` wrote (manifest.json and the
// model files); --ct may be repeated and also takes several files after it,
// as `torchlite analyze --ct` does. --threshold and --batch-size default to
// the manifest's pipeline values. --whole-scan segments every voxel instead of
// the lung region (as `torchlite analyze --whole-scan`).
#pragma once

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace torchlite::app {

// A bad command line: the message names the argument.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Options {
  std::string models;
  std::vector<std::string> ct;
  std::string out;
  std::string format = "auto";
  std::string device = "cpu";
  int threads = 0;  // 0: LibTorch's default
  std::optional<std::string> report;
  std::optional<double> threshold;
  std::optional<int64_t> batch_size;
  bool whole_scan = false;  // segment every voxel, not only the lung region
  bool help = false;
};

Options parse_args(int argc, char** argv);  // raises UsageError
const char* usage_text();

}  // namespace torchlite::app
