#include "cli.h"

#include <charconv>
#include <cmath>
#include <string_view>
#include <system_error>

namespace torchlite::app {

namespace {

template <typename T>
T parse_number(std::string_view flag, std::string_view text) {
  T value{};
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) {
    throw UsageError(std::string(flag) + ": expected a number, got '" + std::string(text) + "'");
  }
  return value;
}

}  // namespace

const char* usage_text() {
  return "usage: torchlite-app --models DIR --ct SCAN.mhd [SCAN.mhd ...] [--ct ...] --out DETECTIONS.csv\n"
         "                     [--format auto|torchscript|aoti] [--device cpu|cuda] [--threads N]\n"
         "                     [--report REPORT.json] [--threshold P] [--batch-size N] [--whole-scan]\n"
         "  --models DIR    the folder `torchlite export` wrote (manifest.json, seg/cls/mal model files)\n"
         "  --ct FILE...    scans to analyze; the series uid is the file name without .mhd\n"
         "  --out FILE      detections CSV: seriesuid,coordX,coordY,coordZ,probability,malignancy\n"
         "  --format F      auto (default: aoti where the export has AOTInductor packages of every model\n"
         "                  for --device, else torchscript), torchscript or aoti\n"
         "  --device D      cpu (default) or cuda\n"
         "  --threads N     intra-op threads (default: LibTorch's choice)\n"
         "  --report FILE   JSON report: per scan, stage seconds and detections with diameter\n"
         "  --threshold P   segmentation probability that marks a voxel (default: the manifest's)\n"
         "  --batch-size N  slices per segmentation batch (default: the manifest's)\n"
         "  --whole-scan    segment every voxel (default: only the box of the scan holding the lungs,\n"
         "                  as `torchlite analyze`; the whole scan where none is found)\n"
         "environment: TORCHLITE_KEEP_FREED_MEMORY=0 lets the C allocator give freed memory back to the\n"
         "  system (default: kept for reuse, which spares every model call fresh page faults)\n";
}

Options parse_args(int argc, char** argv) {
  Options o;
  auto value = [&](int& i, std::string_view flag) -> std::string {
    if (i + 1 >= argc || std::string_view(argv[i + 1]).rfind("--", 0) == 0) {
      throw UsageError(std::string(flag) + ": expected a value");
    }
    return argv[++i];
  };
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      o.help = true;
    } else if (arg == "--models") {
      o.models = value(i, arg);
    } else if (arg == "--ct") {
      o.ct.push_back(value(i, arg));
      while (i + 1 < argc && std::string_view(argv[i + 1]).rfind("--", 0) != 0) o.ct.push_back(argv[++i]);
    } else if (arg == "--out") {
      o.out = value(i, arg);
    } else if (arg == "--format") {
      o.format = value(i, arg);
      if (o.format != "auto" && o.format != "torchscript" && o.format != "aoti") {
        throw UsageError("--format: expected auto, torchscript or aoti, got '" + o.format + "'");
      }
    } else if (arg == "--device") {
      o.device = value(i, arg);
      if (o.device != "cpu" && o.device != "cuda") {
        throw UsageError("--device: expected cpu or cuda, got '" + o.device + "'");
      }
    } else if (arg == "--threads") {
      o.threads = parse_number<int>(arg, value(i, arg));
      if (o.threads < 1) throw UsageError("--threads: expected a number >= 1, got " + std::to_string(o.threads));
    } else if (arg == "--report") {
      o.report = value(i, arg);
    } else if (arg == "--threshold") {
      const double t = parse_number<double>(arg, value(i, arg));
      // As `torchlite analyze`: a probability of 1 marks nothing.
      if (!(t >= 0.0 && t < 1.0)) throw UsageError("--threshold: expected a probability in [0, 1), got " + std::string(argv[i]));
      o.threshold = t;
    } else if (arg == "--batch-size") {
      const int64_t b = parse_number<int64_t>(arg, value(i, arg));
      if (b < 1) throw UsageError("--batch-size: expected a number >= 1, got " + std::to_string(b));
      o.batch_size = b;
    } else if (arg == "--whole-scan") {
      o.whole_scan = true;
    } else {
      throw UsageError("unknown argument '" + std::string(arg) + "' (see --help)");
    }
  }
  if (o.help) return o;
  if (o.models.empty()) throw UsageError("--models: required (the folder `torchlite export` wrote)");
  if (o.ct.empty()) throw UsageError("--ct: required (one or more .mhd scans)");
  if (o.out.empty()) throw UsageError("--out: required (the detections CSV to write)");
  return o;
}

}  // namespace torchlite::app
