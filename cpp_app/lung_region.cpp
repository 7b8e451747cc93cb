#include "lung_region.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <utility>
#include <vector>

#include "json.h"

namespace torchlite::app {

namespace {

// a // b for doubles, as numpy's floor_divide (and CPython's float //) computes
// it: not floor(a / b), which differs when a / b rounds up to an integer
// (1 // 0.1 is 9.0, floor(1 / 0.1) is 10).
double floor_divide(double a, double b) {
  double mod = std::fmod(a, b);
  double div = (a - mod) / b;
  if (mod != 0.0) {
    if ((b < 0) != (mod < 0)) div -= 1.0;
  }
  if (div != 0.0) {
    double floordiv = std::floor(div);
    if (div - floordiv > 0.5) floordiv += 1.0;
    return floordiv;
  }
  return std::copysign(0.0, a / b);
}

// A non-negative integer-valued double as int64, saturated (no undefined
// conversion for absurd spacings; the results do not depend on values past
// the scan's size).
int64_t saturated(double v) {
  constexpr double kMax = 1e15;
  if (!(v < kMax)) return static_cast<int64_t>(kMax);
  return v > 0 ? static_cast<int64_t>(v) : 0;
}

// Python's f"{v:.{digits}f}" (both round the exact binary value, ties to even).
std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

struct Component {
  int64_t size = 0;
  std::array<int64_t, 3> lo{}, hi{};  // subsampled voxel coordinates, inclusive
};

// Voxel states of the subsampled copy.
constexpr uint8_t kNotAir = 0, kOutside = 1, kInside = 2, kSeen = 3;

template <typename T>
LungBox find_box(const T* data, const std::array<int64_t, 3>& shape, const std::array<double, 3>& spacing,
                 double margin_mm) {
  const int64_t plane_full = shape[1] * shape[2];
  // every step-th voxel: about kStepMm apart, and at least kMinSide of them across a slice
  std::array<double, 3> step_value{};  // the exact step (voxel volume), even past the scan's size
  std::array<int64_t, 3> step{};
  for (int a = 0; a < 3; ++a) {
    double q = std::trunc(floor_divide(kStepMm, spacing[a]));
    if (a > 0) q = std::min(q, static_cast<double>(shape[a] / kMinSide));
    q = std::max(1.0, q);
    step_value[a] = q;
    step[a] = std::min(saturated(q), shape[a]);  // past the size: the same single sample
  }
  const std::array<int64_t, 3> sub{(shape[0] + step[0] - 1) / step[0], (shape[1] + step[1] - 1) / step[1],
                                   (shape[2] + step[2] - 1) / step[2]};
  const int64_t ds = sub[0], hs = sub[1], ws = sub[2], plane = hs * ws;
  auto full_index = [&](int64_t i, int64_t r, int64_t c) {
    return i * step[0] * plane_full + r * step[1] * shape[2] + c * step[2];
  };
  auto whole = [&](std::string reason) { return LungBox::whole(shape, std::move(reason)); };

  std::vector<uint8_t> state(static_cast<size_t>(ds * plane));
  bool any_air = false;
  const T air_below = static_cast<T>(kAirHu);  // numpy compares in the array's dtype
  for (int64_t i = 0; i < ds; ++i) {
    for (int64_t r = 0; r < hs; ++r) {
      const T* row = data + full_index(i, r, 0);
      uint8_t* out = state.data() + i * plane + r * ws;
      for (int64_t c = 0; c < ws; ++c) {
        const bool air = row[c * step[2]] < air_below;
        out[c] = air ? kInside : kNotAir;
        any_air |= air;
      }
    }
  }
  if (!any_air) return whole("no air in the scan");

  // 1. outside air: per slice, the 4-connected air components touching the slice's border.
  // Per such component: its voxel count and its HU sum (clipped below at -1024), summed in
  // scan order as numpy's bincount sums its weights.
  std::vector<int64_t> border_count;
  std::vector<double> border_sum;
  std::vector<int32_t> comp(static_cast<size_t>(plane));
  std::vector<int64_t> stack;
  bool any_inside = false;
  for (int64_t i = 0; i < ds; ++i) {
    uint8_t* s = state.data() + i * plane;
    std::fill(comp.begin(), comp.end(), -1);
    int32_t n = 0;
    auto flood = [&](int64_t r, int64_t c) {
      const int64_t p0 = r * ws + c;
      if (s[p0] != kInside) return;
      s[p0] = kOutside;
      comp[p0] = n;
      stack.push_back(p0);
      while (!stack.empty()) {
        const int64_t p = stack.back();
        stack.pop_back();
        const int64_t pr = p / ws, pc = p % ws;
        const int64_t next[4][2] = {{pr - 1, pc}, {pr + 1, pc}, {pr, pc - 1}, {pr, pc + 1}};
        for (const auto& q : next) {
          if (q[0] < 0 || q[0] >= hs || q[1] < 0 || q[1] >= ws) continue;
          const int64_t v = q[0] * ws + q[1];
          if (s[v] != kInside) continue;
          s[v] = kOutside;
          comp[v] = n;
          stack.push_back(v);
        }
      }
      ++n;
    };
    for (int64_t c = 0; c < ws; ++c) {
      flood(0, c);
      flood(hs - 1, c);
    }
    for (int64_t r = 0; r < hs; ++r) {
      flood(r, 0);
      flood(r, ws - 1);
    }
    const size_t base = border_count.size();
    border_count.resize(base + n, 0);
    border_sum.resize(base + n, 0.0);
    for (int64_t r = 0; r < hs; ++r) {
      const T* row = data + full_index(i, r, 0);
      for (int64_t c = 0; c < ws; ++c) {
        const int64_t p = r * ws + c;
        if (s[p] == kInside) any_inside = true;
        if (comp[p] < 0) continue;
        const T v = row[c * step[2]];
        const T clipped = v < static_cast<T>(-1024) ? static_cast<T>(-1024) : v;
        border_count[base + comp[p]] += 1;
        border_sum[base + comp[p]] += static_cast<double>(clipped);
      }
    }
  }
  if (!any_inside) return whole("no air inside the body");

  // 2. air inside the body, as 26-connected 3D components.
  std::vector<Component> components;
  for (int64_t v0 = 0; v0 < ds * plane; ++v0) {
    if (state[v0] != kInside) continue;
    Component k;
    k.lo = {v0 / plane, (v0 % plane) / ws, v0 % ws};
    k.hi = k.lo;
    state[v0] = kSeen;
    stack.push_back(v0);
    while (!stack.empty()) {
      const int64_t v = stack.back();
      stack.pop_back();
      const int64_t i = v / plane, r = (v % plane) / ws, c = v % ws;
      ++k.size;
      k.lo = {std::min(k.lo[0], i), std::min(k.lo[1], r), std::min(k.lo[2], c)};
      k.hi = {std::max(k.hi[0], i), std::max(k.hi[1], r), std::max(k.hi[2], c)};
      for (int64_t di = -1; di <= 1; ++di) {
        const int64_t ni = i + di;
        if (ni < 0 || ni >= ds) continue;
        for (int64_t dr = -1; dr <= 1; ++dr) {
          const int64_t nr = r + dr;
          if (nr < 0 || nr >= hs) continue;
          for (int64_t dc = -1; dc <= 1; ++dc) {
            const int64_t nc = c + dc;
            if (nc < 0 || nc >= ws) continue;
            const int64_t u = ni * plane + nr * ws + nc;
            if (state[u] != kInside) continue;
            state[u] = kSeen;
            stack.push_back(u);
          }
        }
      }
    }
    components.push_back(k);
  }
  int64_t largest = 0;
  for (const Component& k : components) largest = std::max(largest, k.size);
  // np.prod(spacing * steps) / 1000, multiplied in order
  const double voxel_ml = spacing[0] * step_value[0] * (spacing[1] * step_value[1]) * (spacing[2] * step_value[2]) / 1000.0;
  if (static_cast<double>(largest) * voxel_ml < kMinLungMl) {
    return whole("no lung-sized air inside the body (largest component " +
                 fixed(static_cast<double>(largest) * voxel_ml, 1) + " mL)");
  }
  const double keep_from = kMinRelativeSize * static_cast<double>(largest);
  int64_t kept_voxels = 0;
  for (const Component& k : components) {
    if (static_cast<double>(k.size) >= keep_from) kept_voxels += k.size;
  }

  // 3. lungs cut by the field of view: a sizeable border component that is lung-like, not air
  const double big_from =
      std::max(kMinCutShare * static_cast<double>(kept_voxels) / static_cast<double>(ds), static_cast<double>(kMinCutVoxels));
  bool cut = false;
  double max_mean = -std::numeric_limits<double>::infinity();
  for (size_t b = 0; b < border_count.size(); ++b) {
    if (!(static_cast<double>(border_count[b]) >= big_from)) continue;
    const double mean = border_sum[b] / static_cast<double>(border_count[b]);
    if (mean > kOutsideAirMaxHu) cut = true;
    max_mean = std::max(max_mean, mean);
  }
  if (cut) {
    return whole("lung-like air (mean " + fixed(max_mean, 0) +
                 " HU) touches the field of view's border: the lungs may be cut");
  }

  // 4. the box of the kept components, grown and clamped
  std::array<int64_t, 3> lo{sub[0], sub[1], sub[2]}, hi{-1, -1, -1};
  for (const Component& k : components) {
    if (!(static_cast<double>(k.size) >= keep_from)) continue;
    for (int a = 0; a < 3; ++a) {
      lo[a] = std::min(lo[a], k.lo[a]);
      hi[a] = std::max(hi[a], k.hi[a]);
    }
  }
  std::array<int64_t, 6> box{};
  for (int a = 0; a < 3; ++a) {
    // lungs may reach step - 1 voxels past the outermost sample
    const int64_t grow = saturated(std::ceil(margin_mm / spacing[a])) + step[a] - 1;
    box[2 * a] = std::max<int64_t>(0, lo[a] * step[a] - grow);
    box[2 * a + 1] = std::min(shape[a], hi[a] * step[a] + 1 + grow);
  }
  LungBox result;
  result.z0 = box[0];
  result.z1 = box[1];
  result.y0 = box[2];
  result.y1 = box[3];
  result.x0 = box[4];
  result.x1 = box[5];
  result.shape = shape;
  result.found = true;
  return result;
}

}  // namespace

LungBox LungBox::whole(const std::array<int64_t, 3>& shape, std::string reason) {
  LungBox b;
  b.z1 = shape[0];
  b.y1 = shape[1];
  b.x1 = shape[2];
  b.shape = shape;
  b.found = false;
  b.reason = std::move(reason);
  return b;
}

bool LungBox::is_whole() const {
  return z1 - z0 == shape[0] && y1 - y0 == shape[1] && x1 - x0 == shape[2];
}

double LungBox::fraction() const {
  const double box = static_cast<double>((z1 - z0) * (y1 - y0) * (x1 - x0));
  return box / static_cast<double>(shape[0] * shape[1] * shape[2]);
}

std::string LungBox::to_json() const {
  // round(fraction, 4) as Python rounds: the exact value to 4 decimals, read back
  const double rounded = std::strtod(fixed(fraction(), 4).c_str(), nullptr);
  std::string out = "{\"box_irc\": [" + std::to_string(z0) + ", " + std::to_string(z1) + ", " + std::to_string(y0) +
                    ", " + std::to_string(y1) + ", " + std::to_string(x0) + ", " + std::to_string(x1) +
                    "], \"found\": " + (found ? "true" : "false") + ", \"fraction\": " + json_number(rounded);
  if (!reason.empty()) out += ", \"reason\": " + json_quote(reason);
  return out + "}";
}

LungBox lung_box(const at::Tensor& volume, const std::array<double, 3>& spacing_irc, double margin_mm) {
  TORCH_CHECK(volume.dim() == 3 && volume.numel() > 0, "lung_box: expected a non-empty (D, H, W) scan, got ",
              volume.sizes());
  TORCH_CHECK(volume.device().is_cpu(), "lung_box: expected a CPU tensor");
  TORCH_CHECK(volume.scalar_type() == at::kShort || volume.scalar_type() == at::kFloat,
              "lung_box: expected int16 or float32 HU, got ", volume.scalar_type());
  for (double s : spacing_irc) {
    TORCH_CHECK(std::isfinite(s) && s > 0, "lung_box: spacings must be finite and > 0, got ", s);
  }
  TORCH_CHECK(std::isfinite(margin_mm) && margin_mm >= 0, "lung_box: margin must be finite and >= 0, got ", margin_mm);
  const std::array<int64_t, 3> shape{volume.size(0), volume.size(1), volume.size(2)};
  const at::Tensor v = volume.contiguous();
  if (v.scalar_type() == at::kShort) return find_box(v.data_ptr<int16_t>(), shape, spacing_irc, margin_mm);
  return find_box(v.data_ptr<float>(), shape, spacing_irc, margin_mm);
}

}  // namespace torchlite::app
