// torchlite-app: CT scans in, nodule detections out, no Python.
//
// The pipeline of `torchlite analyze` (see pipeline.h) on the models
// `torchlite export` wrote, TorchScript or AOTInductor, with the crop3d
// operator compiled from csrc/. Exit status: 0 when every scan was analyzed;
// 1 when some scans failed (each reported, the others analyzed and written);
// 2 for a bad command line, a missing or broken model or manifest, an
// unwritable output, or when no scan could be analyzed. Every failure is one
// line, `error: ...`, on stderr.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <torch/cuda.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <set>
#include <string>
#include <system_error>
#include <vector>

#include "cli.h"
#include "malloc_policy.h"
#include "manifest.h"
#include "metaimage.h"
#include "models.h"
#include "pipeline.h"
#include "report.h"

namespace {

using namespace torchlite::app;

constexpr int kExitSomeScansFailed = 1;
constexpr int kExitBadInput = 2;

// One line: c10::Error's what() carries a backtrace on the lines after the first.
std::string one_line(const std::string& text) {
  std::string line = text.substr(0, text.find('\n'));
  return line;
}

int fail(const std::string& message) {
  std::fprintf(stderr, "error: %s\n", one_line(message).c_str());
  return kExitBadInput;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// series uid -> path, as `torchlite analyze --ct` builds it: the file stem, each once.
std::vector<std::pair<std::string, std::filesystem::path>> scan_list(const Options& o) {
  std::vector<std::pair<std::string, std::filesystem::path>> scans;
  std::set<std::string> seen;
  for (const std::string& name : o.ct) {
    const std::filesystem::path path(name);
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec)) throw UsageError("--ct " + name + ": no such file");
    const std::string uid = path.stem().string();
    if (!seen.insert(uid).second) throw UsageError("--ct " + name + ": series " + uid + " given twice");
    scans.emplace_back(uid, path);
  }
  return scans;
}

int run(const Options& o) {
  const auto started = std::chrono::steady_clock::now();
  keep_freed_memory();  // before the first large allocation (why: malloc_policy.cpp)
  const auto scans = scan_list(o);
  if (o.threads > 0) at::set_num_threads(o.threads);
  const c10::Device device(o.device == "cuda" ? c10::kCUDA : c10::kCPU);
  if (device.is_cuda() && !torch::cuda::is_available()) {
    throw UsageError("--device cuda: no CUDA device is available to this LibTorch");
  }
  const Manifest manifest = read_manifest(std::filesystem::path(o.models) / "manifest.json");
  // auto: AOTInductor where the export allows it (measured on a full-size CPU scan: 1.8-2x
  // `torchlite analyze`'s speed, TorchScript 1.1x), else TorchScript.
  const bool aoti = o.format == "aoti" || (o.format == "auto" && manifest.device == o.device && manifest.has_format("aoti"));
  const ModelFormat format = aoti ? ModelFormat::Aoti : ModelFormat::TorchScript;
  if (format == ModelFormat::Aoti && manifest.device != o.device) {
    throw UsageError("--device " + o.device + ": the AOTInductor packages in " + o.models + " are compiled for " +
                     manifest.device + " only");
  }
  c10::InferenceMode inference;
  const auto load_started = std::chrono::steady_clock::now();
  Models models = load_models(manifest, format, device);
  const double load_seconds = seconds_since(load_started);

  AnalysisConfig config;
  config.threshold = o.threshold.value_or(manifest.pipeline.threshold);
  config.seg_batch_size = o.batch_size.value_or(manifest.pipeline.seg_batch_size);
  config.cls_batch_size = manifest.pipeline.cls_batch_size;
  config.device = device;
  config.lung_region = !o.whole_scan;

  std::vector<ScanAnalysis> results;
  std::vector<ScanFailure> errors;
  for (const auto& [uid, path] : scans) {
    try {
      results.push_back(analyze_scan(path, uid, models, manifest, config));
      const ScanAnalysis& r = results.back();
      if (r.lung_region && !r.lung_region->found) {  // as the Python side logs it
        std::fprintf(stderr, "%s: lung region: using the whole scan (%lld, %lld, %lld): %s\n", uid.c_str(),
                     static_cast<long long>(r.shape[0]), static_cast<long long>(r.shape[1]),
                     static_cast<long long>(r.shape[2]), r.lung_region->reason.c_str());
      }
      std::fprintf(stderr, "%s: %zu detections in %.2f s\n", uid.c_str(), r.detections.size(), r.seconds.back().second);
    } catch (const MetaImageError& e) {  // "<file>: <field>: <reason>"
      errors.push_back({uid, path.string(), e.what()});
    } catch (const std::exception& e) {  // e.g. a scan too large for memory
      errors.push_back({uid, path.string(), path.string() + ": " + one_line(e.what())});
    }
    if (!errors.empty() && errors.back().series_uid == uid) {
      std::fprintf(stderr, "error: %s\n", one_line(errors.back().error).c_str());
    }
  }

  write_file_atomically(o.out, detections_csv(results));
  if (o.report) {
    ReportInfo info;
    info.torchlite_version = manifest.torchlite_version;
    info.device = device.str();
    info.format = format_name(format);
    info.manifest_path = manifest.path.string();
    for (const auto& [task, entry] : manifest.models) {
      info.model_files.emplace_back(task, manifest.model_file(task, info.format).string());
    }
    info.threshold = config.threshold;
    info.erosion = manifest.pipeline.erosion_iterations;
    info.seg_batch_size = config.seg_batch_size;
    info.cls_batch_size = config.cls_batch_size;
    info.lung_region = config.lung_region;
    info.threads = at::get_num_threads();
    info.load_models_seconds = std::round(load_seconds * 1e4) / 1e4;
    info.seconds = std::round(seconds_since(started) * 1e3) / 1e3;
    write_file_atomically(*o.report, report_json(results, errors, info));
  }
  size_t count = 0;
  for (const auto& r : results) count += r.detections.size();
  std::printf("%zu scans analyzed, %zu detections in %.1f s (models loaded in %.2f s): %s\n", results.size(), count,
              seconds_since(started), load_seconds, o.out.c_str());
  if (errors.empty()) return 0;
  std::printf("%zu scans could not be read%s\n", errors.size(), o.report ? " (see the report's 'errors')" : "");
  return results.empty() ? kExitBadInput : kExitSomeScansFailed;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse_args(argc, argv);
    if (o.help) {
      std::fputs(usage_text(), stdout);
      return 0;
    }
    return run(o);
  } catch (const UsageError& e) {
    return fail(e.what());
  } catch (const ManifestError& e) {
    return fail(e.what());
  } catch (const ModelError& e) {
    return fail(e.what());
  } catch (const OutputError& e) {
    return fail(e.what());
  } catch (const std::exception& e) {
    return fail(std::string("internal: ") + e.what());
  } catch (...) {
    return fail("internal: unknown exception");
  }
}
