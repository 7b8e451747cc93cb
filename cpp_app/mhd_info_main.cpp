// torchlite-mhd-info: what the C++ MetaImage reader makes of a scan.
//
//   torchlite-mhd-info [--no-stats] [--voxels-out FILE] scan.mhd
//       header + voxel statistics as JSON; --voxels-out writes the voxels as
//       read_volume returns them (raw, native byte order, the JSON's dtype,
//       (Z,Y,X) C order) so tests can compare every voxel, not only sums
//   torchlite-mhd-info --check-ops
//       the linked operators are registered and run
//
// A scan the reader refuses gives one line, `error: <file>: <field>: <reason>`,
// on stderr and exit status 2; a bad command line gives usage and status 2;
// anything else (a bug) gives `error: <file>: internal: ...` and status 1.
// The tests drive the reader through this tool; the C++ app calls the same
// functions.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <cstdio>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

#include "json.h"
#include "metaimage.h"

namespace {

using torchlite::app::MetaImage;

constexpr int kExitBadInput = 2;
constexpr int kExitInternal = 1;

using torchlite::app::json_number;
using torchlite::app::json_quote;

template <typename Array>
std::string json_array(const Array& values) {
  std::string out = "[";
  for (size_t i = 0; i < values.size(); ++i) {
    using Value = std::decay_t<decltype(values[i])>;
    if constexpr (std::is_integral_v<Value>) {  // sizes stay integers ("80", not "80.0")
      out += (i ? ", " : "") + std::to_string(values[i]);
    } else {
      out += (i ? ", " : "") + json_number(static_cast<double>(values[i]));
    }
  }
  return out + "]";
}

std::string header_json(const MetaImage& m) {
  std::string out = "{\n";
  auto field = [&](const char* key, const std::string& value) {
    out += std::string("  ") + json_quote(key) + ": " + value + ",\n";
  };
  field("header", json_quote(m.header_path.string()));
  field("data_file", json_quote(m.data_path.string()));
  field("size_xyz", json_array(m.size_xyz));
  field("shape_zyx", json_array(m.shape_zyx()));
  field("spacing", json_array(m.spacing));
  field("origin", json_array(m.origin));
  field("direction", json_array(m.direction));
  field("element_type", json_quote(m.element_type));
  field("element_size", std::to_string(m.element_size));
  field("msb", m.msb ? "true" : "false");
  field("compressed", m.compressed ? "true" : "false");
  field("compressed_size", m.compressed_size ? std::to_string(*m.compressed_size) : "null");
  field("header_size", std::to_string(m.header_size));
  field("local_offset", std::to_string(m.local_offset));
  field("voxel_count", std::to_string(m.voxel_count));
  field("nbytes", std::to_string(m.nbytes));
  return out;
}

std::string stats_json(const at::Tensor& volume) {
  // The sum in float64 (no float64 copy of the volume): exact for integer CT
  // data, so it compares with numpy's.
  const double sum = volume.sum(at::kDouble).item<double>();
  std::string out = "  \"dtype\": " + json_quote(volume.scalar_type() == at::kShort ? "int16" : "float32") + ",\n";
  out += "  \"stats\": {\"min\": " + json_number(volume.min().item<double>()) +
         ", \"max\": " + json_number(volume.max().item<double>()) + ", \"sum\": " + json_number(sum) +
         ", \"mean\": " + json_number(sum / static_cast<double>(volume.numel())) + "}\n";
  return out;
}

// Proves the operator library survived the link: the dispatcher knows
// torchlite::crop3d, and its CPU kernel crops what slicing would.
int check_ops() {
  std::optional<c10::OperatorHandle> op;
  try {
    op = c10::Dispatcher::singleton().findSchemaOrThrow("torchlite::crop3d", "");
  } catch (const std::exception& e) {
    std::printf("torchlite::crop3d registered: no\n");
    std::fprintf(stderr, "error: --check-ops: torchlite::crop3d: %s\n", e.what());
    return kExitInternal;
  }
  std::printf("torchlite::crop3d registered: yes\n");
  const at::Tensor volume = at::arange(4 * 5 * 6, at::kShort).reshape({4, 5, 6});
  const at::Tensor centers = at::tensor(std::vector<int64_t>{1, 2, 3}, at::kLong).reshape({1, 3});
  // Boxed call: the schema's argument list, no C++ signature to keep in step.
  // size (2,2,2) around (1,2,3) starts at center - size//2 = (0,1,2).
  torch::jit::Stack stack{volume, centers, std::vector<int64_t>{2, 2, 2}, -1000.0, false, c10::IValue()};
  op->callBoxed(&stack);
  const at::Tensor patch = stack.at(0).toTensor();
  const at::Tensor expected = volume.slice(0, 0, 2).slice(1, 1, 3).slice(2, 2, 4).to(at::kFloat);
  const bool same = patch.sizes() == at::IntArrayRef({1, 1, 2, 2, 2}) && at::equal(patch.reshape({2, 2, 2}), expected);
  std::printf("torchlite::crop3d CPU kernel matches slicing: %s\n", same ? "yes" : "no");
  return same ? 0 : kExitInternal;
}

// Written to a temporary name and renamed: a reader never sees half a file.
void write_voxels(const at::Tensor& volume, const std::string& path) {
  const at::Tensor dense = volume.contiguous();
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  const auto nbytes = static_cast<size_t>(dense.nbytes());
  const bool ok = f && std::fwrite(dense.data_ptr(), 1, nbytes, f) == nbytes;
  const bool closed = f && std::fclose(f) == 0;
  if (!ok || !closed || std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string reason = std::strerror(errno);
    std::remove(tmp.c_str());
    throw torchlite::app::MetaImageError(path, "--voxels-out", "cannot write: " + reason);
  }
}

int usage() {
  std::fprintf(stderr,
               "usage: torchlite-mhd-info [--no-stats] [--voxels-out FILE] SCAN.mhd\n"
               "       torchlite-mhd-info --check-ops\n");
  return kExitBadInput;
}

}  // namespace

int main(int argc, char** argv) {
  bool stats = true;
  const char* path = nullptr;
  const char* voxels_out = nullptr;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--check-ops" && argc == 2) {
      try {
        return check_ops();
      } catch (const std::exception& e) {
        std::fprintf(stderr, "error: --check-ops: internal: %s\n", e.what());
        return kExitInternal;
      }
    } else if (arg == "--no-stats") {
      stats = false;
    } else if (arg == "--voxels-out" && i + 1 < argc) {
      voxels_out = argv[++i];
    } else if (arg == "-h" || arg == "--help") {
      usage();
      return 0;
    } else if (!arg.empty() && arg[0] == '-' && arg != "-") {
      return usage();
    } else if (path) {
      return usage();
    } else {
      path = argv[i];
    }
  }
  if (!path) return usage();

  try {
    const MetaImage image = torchlite::app::read_header(path);
    std::string out = header_json(image);
    if (stats || voxels_out) {
      const at::Tensor volume = torchlite::app::read_volume(image);
      if (voxels_out) write_voxels(volume, voxels_out);
      out += stats_json(volume);
    } else {
      out.resize(out.size() - 2);  // the last ",\n"
      out += "\n";
    }
    out += "}\n";
    std::fputs(out.c_str(), stdout);
    return 0;
  } catch (const torchlite::app::MetaImageError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return kExitBadInput;
  } catch (const std::exception& e) {
    // c10::Error's what() carries a backtrace over many lines: the first is the message.
    std::string what = e.what();
    what = what.substr(0, what.find('\n'));
    std::fprintf(stderr, "error: %s: internal: %s\n", path, what.c_str());
    return kExitInternal;
  }
}
