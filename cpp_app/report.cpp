#include "report.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <unistd.h>

#include "json.h"

namespace torchlite::app {

namespace {

template <typename Array>
std::string number_list(const Array& values) {
  std::string out = "[";
  for (size_t i = 0; i < values.size(); ++i) {
    out += (i ? ", " : "") + json_number(static_cast<double>(values[i]));
  }
  return out + "]";
}

std::string int_list(const std::array<int64_t, 3>& values) {
  return "[" + std::to_string(values[0]) + ", " + std::to_string(values[1]) + ", " + std::to_string(values[2]) + "]";
}

std::string scan_json(const ScanAnalysis& s, const std::string& indent) {
  std::string out = indent + "{\"series_uid\": " + json_quote(s.series_uid) + ", \"path\": " + json_quote(s.path) +
                    ", \"shape\": " + int_list(s.shape) + ", \"spacing_xyz\": " + number_list(s.spacing_xyz) +
                    ", \"seconds\": {";
  for (size_t k = 0; k < s.seconds.size(); ++k) {
    out += (k ? ", " : "") + json_quote(s.seconds[k].first) + ": " + json_number(s.seconds[k].second);
  }
  out += "}, \"lung_region\": " + (s.lung_region ? s.lung_region->to_json() : std::string("null"));
  out += ",\n" + indent + " \"detections\": [";
  for (size_t k = 0; k < s.detections.size(); ++k) {
    const ScanDetection& d = s.detections[k];
    out += (k ? ",\n" : "\n") + indent + "  {\"xyz\": " + number_list(d.center_xyz) +
           ", \"irc\": " + number_list(d.center_irc) + ", \"probability\": " + json_number(d.probability) +
           ", \"malignancy\": " + (d.malignancy ? json_number(*d.malignancy) : "null") +
           ", \"diameter_mm\": " + json_number(d.diameter_mm) + ", \"voxels\": " + std::to_string(d.voxels) + "}";
  }
  return out + (s.detections.empty() ? "]}" : "\n" + indent + " ]}");
}

}  // namespace

std::string detections_csv(const std::vector<ScanAnalysis>& scans) {
  std::string out = "seriesuid,coordX,coordY,coordZ,probability,malignancy\n";
  for (const ScanAnalysis& s : scans) {
    for (const ScanDetection& d : s.detections) {
      out += s.series_uid + "," + repr_double(d.center_xyz[0]) + "," + repr_double(d.center_xyz[1]) + "," +
             repr_double(d.center_xyz[2]) + "," + repr_double(d.probability) + "," +
             (d.malignancy ? repr_double(*d.malignancy) : "") + "\n";
    }
  }
  return out;
}

std::string report_json(const std::vector<ScanAnalysis>& scans, const std::vector<ScanFailure>& errors,
                        const ReportInfo& info) {
  std::string out = "{\n";
  out += " \"program\": \"torchlite-app\",\n";
  out += " \"torchlite_version\": " + json_quote(info.torchlite_version) + ",\n";
  out += " \"device\": " + json_quote(info.device) + ",\n";
  out += " \"format\": " + json_quote(info.format) + ",\n";
  out += " \"models\": {\"manifest\": " + json_quote(info.manifest_path);
  for (const auto& [task, file] : info.model_files) out += ", " + json_quote(task) + ": " + json_quote(file);
  out += "},\n";
  out += " \"config\": {\"threshold\": " + json_number(info.threshold) +
         ", \"erosion\": " + std::to_string(info.erosion) +
         ", \"seg_batch_size\": " + std::to_string(info.seg_batch_size) +
         ", \"cls_batch_size\": " + std::to_string(info.cls_batch_size) +
         ", \"lung_region\": " + (info.lung_region ? "true" : "false") +
         ", \"threads\": " + std::to_string(info.threads) + "},\n";
  out += " \"load_models_seconds\": " + json_number(info.load_models_seconds) + ",\n";
  out += " \"seconds\": " + json_number(info.seconds) + ",\n";
  out += " \"scans\": [";
  for (size_t k = 0; k < scans.size(); ++k) out += (k ? ",\n" : "\n") + scan_json(scans[k], "  ");
  out += scans.empty() ? "],\n" : "\n ],\n";
  out += " \"errors\": [";
  for (size_t k = 0; k < errors.size(); ++k) {
    out += (k ? ",\n" : "\n") + std::string("  {\"series_uid\": ") + json_quote(errors[k].series_uid) +
           ", \"path\": " + json_quote(errors[k].path) + ", \"error\": " + json_quote(errors[k].error) + "}";
  }
  out += errors.empty() ? "]\n" : "\n ]\n";
  return out + "}\n";
}

void write_file_atomically(const std::filesystem::path& path, const std::string& text) {
  const std::string target = path.string();
  const std::string tmp = target + ".tmp." + std::to_string(::getpid());
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw OutputError(target + ": cannot write: " + std::strerror(errno));
  const bool written = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  const int saved = errno;
  const bool closed = std::fclose(f) == 0;
  if (!written || !closed || std::rename(tmp.c_str(), target.c_str()) != 0) {
    const std::string reason = std::strerror(written && closed ? errno : saved);
    std::remove(tmp.c_str());
    throw OutputError(target + ": cannot write: " + reason);
  }
}

}  // namespace torchlite::app
