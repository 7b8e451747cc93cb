#include "pipeline.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "classify.h"
#include "grouping.h"
#include "lung_region.h"
#include "metaimage.h"
#include "segment.h"

namespace torchlite::app {

namespace {

// Seconds per stage, rounded to 0.1 ms as the Python report rounds them.
class Stopwatch {
 public:
  using Clock = std::chrono::steady_clock;

  void lap(const std::string& stage) {
    const auto now = Clock::now();
    seconds_.emplace_back(stage, rounded(now - last_));
    last_ = now;
  }
  std::vector<std::pair<std::string, double>> total() {
    seconds_.emplace_back("total", rounded(Clock::now() - start_));
    return seconds_;
  }

 private:
  static double rounded(Clock::duration d) {
    return std::round(std::chrono::duration<double>(d).count() * 1e4) / 1e4;
  }
  Clock::time_point start_ = Clock::now(), last_ = start_;
  std::vector<std::pair<std::string, double>> seconds_;
};

}  // namespace

std::array<double, 3> irc_to_xyz(const std::array<double, 3>& irc, const std::array<double, 3>& origin,
                                 const std::array<double, 3>& spacing, const std::array<double, 9>& direction) {
  const std::array<double, 3> scaled{irc[2] * spacing[0], irc[1] * spacing[1], irc[0] * spacing[2]};
  std::array<double, 3> xyz{};
  for (int k = 0; k < 3; ++k) {
    xyz[k] = origin[k] + direction[3 * k] * scaled[0] + direction[3 * k + 1] * scaled[1] +
             direction[3 * k + 2] * scaled[2];
  }
  return xyz;
}

ScanAnalysis analyze_scan(const std::filesystem::path& mhd, const std::string& series_uid, Models& models,
                          const Manifest& manifest, const AnalysisConfig& config) {
  const PipelineConstants& p = manifest.pipeline;
  Stopwatch watch;
  const MetaImage image = read_header(mhd);
  const at::Tensor volume = read_volume(image);  // (D, H, W): int16 for MET_SHORT, else float32
  watch.lap("load");

  const std::array<double, 3> spacing_irc{image.spacing[2], image.spacing[1], image.spacing[0]};
  std::optional<LungBox> region;
  std::optional<VoxelBox> box;
  if (config.lung_region) {
    region = lung_box(volume, spacing_irc);
    box = VoxelBox{region->z0, region->z1, region->y0, region->y1, region->x0, region->x1};
    watch.lap("lung_region");
  }
  const at::Tensor probability =
      segment_volume(volume, *models.seg, manifest.models.at("seg"), p, config.seg_batch_size, config.device, box);
  watch.lap("segment");

  const std::vector<VoxelGroup> groups = group_voxels(probability, volume, spacing_irc, p, config.threshold);
  watch.lap("group");

  ScanAnalysis result;
  if (!groups.empty()) {
    const int64_t n = static_cast<int64_t>(groups.size());
    at::Tensor centers = at::empty({n, 3}, at::kLong);
    auto c = centers.accessor<int64_t, 2>();
    for (int64_t k = 0; k < n; ++k) {
      const auto voxel = nearest_voxel(groups[k].center_irc);
      for (int d = 0; d < 3; ++d) c[k][d] = voxel[d];
    }
    const at::Tensor crops = crop_candidates(volume, centers, p);
    const at::Tensor nodule =
        positive_probability(*models.cls, manifest.models.at("cls"), crops, config.cls_batch_size, config.device);
    watch.lap("classify");
    at::Tensor malignant;
    if (models.mal) {
      malignant =
          positive_probability(*models.mal, manifest.models.at("mal"), crops, config.cls_batch_size, config.device);
    }
    watch.lap("malignancy");
    const auto nodule_p = nodule.accessor<float, 1>();
    for (int64_t k = 0; k < n; ++k) {
      ScanDetection d;
      d.center_irc = groups[k].center_irc;
      d.center_xyz = irc_to_xyz(d.center_irc, image.origin, image.spacing, image.direction);
      d.probability = nodule_p[k];
      if (malignant.defined()) d.malignancy = malignant.data_ptr<float>()[k];
      d.diameter_mm = std::round(groups[k].diameter_mm * 1000.0) / 1000.0;
      d.voxels = groups[k].voxels;
      result.detections.push_back(d);
    }
    std::stable_sort(result.detections.begin(), result.detections.end(),
                     [](const ScanDetection& a, const ScanDetection& b) { return a.probability > b.probability; });
  } else {
    watch.lap("classify");
    watch.lap("malignancy");
  }
  result.series_uid = series_uid;
  result.path = mhd.string();
  result.shape = {volume.size(0), volume.size(1), volume.size(2)};
  result.spacing_xyz = image.spacing;
  result.lung_region = region;
  result.seconds = watch.total();
  return result;
}

}  // namespace torchlite::app
