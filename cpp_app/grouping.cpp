#include "grouping.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <numeric>

namespace torchlite::app {

namespace {

struct Offset {
  int64_t di, dr, dc;
};

std::vector<Offset> offsets_of(const Structure& s) {
  std::vector<Offset> out;
  for (int i = 0; i < 3; ++i)
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < 3; ++c)
        if (s[i][r][c]) out.push_back({i - 1, r - 1, c - 1});
  return out;
}

// Per provisional label: what the center of mass and the size need.
struct Accumulator {
  double weight = 0.0, wi = 0.0, wr = 0.0, wc = 0.0;
  int64_t voxels = 0;

  void add(const Accumulator& o) {
    weight += o.weight;
    wi += o.wi;
    wr += o.wr;
    wc += o.wc;
    voxels += o.voxels;
  }
};

// Union-find over provisional labels; the root of a set is its smallest
// label, i.e. the label of the set's first voxel in scan order.
class DisjointSets {
 public:
  int32_t make() {
    parent_.push_back(static_cast<int32_t>(parent_.size()));
    return parent_.back();
  }
  int32_t find(int32_t a) {
    while (parent_[a] != a) {
      parent_[a] = parent_[parent_[a]];  // path halving
      a = parent_[a];
    }
    return a;
  }
  int32_t unite(int32_t a, int32_t b) {
    a = find(a);
    b = find(b);
    if (a == b) return a;
    if (b < a) std::swap(a, b);
    parent_[b] = a;
    return a;
  }
  size_t size() const { return parent_.size(); }

 private:
  std::vector<int32_t> parent_;
};

template <typename HU>
std::vector<VoxelGroup> label_and_measure(const std::vector<uint8_t>& mask, const HU* hu,
                                          const std::array<int64_t, 3>& shape, const std::array<double, 3>& spacing_irc,
                                          const PipelineConstants& p) {
  const int64_t depth = shape[0], height = shape[1], width = shape[2], plane = height * width;
  // The labelling structure's neighbours met before a voxel in scan order; by
  // its symmetry, they connect every pair it connects.
  std::vector<Offset> backward;
  for (const Offset& o : offsets_of(p.labelling_structure)) {
    if (o.di < 0 || (o.di == 0 && (o.dr < 0 || (o.dr == 0 && o.dc < 0)))) backward.push_back(o);
  }
  // Provisional labels of the previous and the current slice (0 = none, k+1 = label k).
  std::vector<int32_t> prev(plane, 0), cur(plane, 0);
  DisjointSets sets;
  std::vector<Accumulator> acc;
  for (int64_t i = 0; i < depth; ++i) {
    std::fill(cur.begin(), cur.end(), 0);
    const uint8_t* m = mask.data() + i * plane;
    for (int64_t r = 0; r < height; ++r) {
      for (int64_t c = 0; c < width; ++c) {
        if (!m[r * width + c]) continue;
        int32_t label = -1;
        for (const Offset& o : backward) {
          const int64_t nr = r + o.dr, nc = c + o.dc;
          if (i + o.di < 0 || nr < 0 || nr >= height || nc < 0 || nc >= width) continue;
          const int32_t n = (o.di < 0 ? prev : cur)[nr * width + nc];
          if (n == 0) continue;
          label = label < 0 ? sets.find(n - 1) : sets.unite(label, n - 1);
        }
        if (label < 0) {
          label = sets.make();
          acc.emplace_back();
        }
        cur[r * width + c] = label + 1;
        const double v = std::clamp(static_cast<double>(hu[i * plane + r * width + c]), p.weight_lo, p.weight_hi);
        const double w = v + p.weight_offset;
        Accumulator& a = acc[label];
        a.weight += w;
        a.wi += w * static_cast<double>(i);
        a.wr += w * static_cast<double>(r);
        a.wc += w * static_cast<double>(c);
        a.voxels += 1;
      }
    }
    std::swap(prev, cur);
  }
  // Fold every provisional label into its root; roots in increasing order are
  // the groups in scan order of their first voxels.
  std::vector<VoxelGroup> groups;
  for (size_t l = 0; l < sets.size(); ++l) {
    const int32_t root = sets.find(static_cast<int32_t>(l));
    if (root != static_cast<int32_t>(l)) acc[root].add(acc[l]);
  }
  for (size_t l = 0; l < sets.size(); ++l) {
    if (sets.find(static_cast<int32_t>(l)) != static_cast<int32_t>(l)) continue;
    const Accumulator& a = acc[l];
    VoxelGroup g;
    g.center_irc = {a.wi / a.weight, a.wr / a.weight, a.wc / a.weight};
    g.voxels = a.voxels;
    g.diameter_mm = estimate_diameter_mm(a.voxels, spacing_irc);
    groups.push_back(g);
  }
  return groups;
}

}  // namespace

void erode(std::vector<uint8_t>& mask, const std::array<int64_t, 3>& shape, const Structure& structure,
           bool border_value, int64_t iterations) {
  const int64_t depth = shape[0], height = shape[1], width = shape[2], plane = height * width;
  const std::vector<Offset> offsets = offsets_of(structure);
  const bool has_center = structure[1][1][1];
  std::vector<uint8_t> out(mask.size());
  for (int64_t it = 0; it < iterations; ++it) {
    at::parallel_for(0, depth, 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        for (int64_t r = 0; r < height; ++r) {
          for (int64_t c = 0; c < width; ++c) {
            const int64_t v = i * plane + r * width + c;
            if (has_center && !mask[v]) {  // the structure reads the voxel itself: it stays 0
              out[v] = 0;
              continue;
            }
            bool keep = true;
            for (const Offset& o : offsets) {
              const int64_t ni = i + o.di, nr = r + o.dr, nc = c + o.dc;
              const bool inside = ni >= 0 && ni < depth && nr >= 0 && nr < height && nc >= 0 && nc < width;
              if (!(inside ? mask[ni * plane + nr * width + nc] != 0 : border_value)) {
                keep = false;
                break;
              }
            }
            out[v] = keep;
          }
        }
      }
    });
    mask.swap(out);
  }
}

std::vector<VoxelGroup> group_voxels(const at::Tensor& probability, const at::Tensor& hu,
                                     const std::array<double, 3>& spacing_irc, const PipelineConstants& pipeline,
                                     double threshold) {
  TORCH_CHECK(probability.dim() == 3 && probability.sizes() == hu.sizes(), "group_voxels: probability ",
              probability.sizes(), " and hu ", hu.sizes(), " must be the same 3D shape");
  TORCH_CHECK(probability.scalar_type() == at::kFloat, "group_voxels: probability must be float32");
  TORCH_CHECK(hu.scalar_type() == at::kShort || hu.scalar_type() == at::kFloat,
              "group_voxels: hu must be int16 or float32, got ", hu.scalar_type());
  const std::array<int64_t, 3> shape{probability.size(0), probability.size(1), probability.size(2)};
  const at::Tensor prob = probability.contiguous();
  const float* p = prob.data_ptr<float>();
  // numpy compares a float32 array with a Python float in float32 (NEP 50).
  const float limit = static_cast<float>(threshold);
  std::vector<uint8_t> mask(static_cast<size_t>(prob.numel()));
  at::parallel_for(0, prob.numel(), 1 << 16, [&](int64_t begin, int64_t end) {
    for (int64_t v = begin; v < end; ++v) mask[v] = p[v] > limit;
  });
  if (pipeline.erosion_iterations > 0) {
    erode(mask, shape, pipeline.erosion_structure, pipeline.erosion_border_value, pipeline.erosion_iterations);
  }
  const at::Tensor h = hu.contiguous();
  if (h.scalar_type() == at::kShort) {
    return label_and_measure(mask, h.data_ptr<int16_t>(), shape, spacing_irc, pipeline);
  }
  return label_and_measure(mask, h.data_ptr<float>(), shape, spacing_irc, pipeline);
}

std::array<int64_t, 3> nearest_voxel(const std::array<double, 3>& center_irc) {
  return {static_cast<int64_t>(std::floor(center_irc[0] + 0.5)), static_cast<int64_t>(std::floor(center_irc[1] + 0.5)),
          static_cast<int64_t>(std::floor(center_irc[2] + 0.5))};
}

double estimate_diameter_mm(int64_t voxels, const std::array<double, 3>& spacing_irc) {
  const double volume_mm3 = static_cast<double>(voxels) * spacing_irc[0] * spacing_irc[1] * spacing_irc[2];
  return 2.0 * std::cbrt(3.0 * volume_mm3 / (4.0 * M_PI)) + 2.0 * (spacing_irc[1] + spacing_irc[2]) / 2.0;
}

}  // namespace torchlite::app
