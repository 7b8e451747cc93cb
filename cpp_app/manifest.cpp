#include "manifest.h"

#include <cmath>
#include <fstream>
#include <sstream>

namespace torchlite::app {

namespace {

// A JSON value with the dotted path that leads to it, so every error names
// the field the way a reader of manifest.json finds it.
struct Field {
  const std::filesystem::path* file;
  const Json* value;
  std::string name;

  [[noreturn]] void fail(const std::string& reason) const {
    throw ManifestError(file->string() + ": " + (name.empty() ? "(top level)" : name) + ": " + reason);
  }

  Field operator[](const std::string& key) const {
    if (!value->is_object()) fail(std::string("expected an object, got ") + Json::kind_name(value->kind()));
    const Json* member = value->find(key);
    const std::string child = name.empty() ? key : name + "." + key;
    if (!member) Field{file, value, child}.fail("missing");
    return {file, member, child};
  }

  bool has(const std::string& key) const { return value->find(key) != nullptr; }

  Field at(size_t index) const {
    const auto& items = array();
    const std::string child = name + "[" + std::to_string(index) + "]";
    if (index >= items.size()) Field{file, value, child}.fail("missing");
    return {file, &items[index], child};
  }

  template <typename T, typename F>
  T checked(F&& get) const {
    try {
      return get();
    } catch (const JsonError& e) {
      fail(e.what());
    }
  }

  double number() const { return checked<double>([&] { return value->as_number(); }); }
  const std::string& string() const { return *checked<const std::string*>([&] { return &value->as_string(); }); }
  const std::vector<Json>& array() const {
    return *checked<const std::vector<Json>*>([&] { return &value->as_array(); });
  }
  const std::map<std::string, Json>& object() const {
    return *checked<const std::map<std::string, Json>*>([&] { return &value->as_object(); });
  }
  bool boolean_or_01() const {  // scipy's border_value: 0/1 (json of a Python int), or true/false
    if (value->kind() == Json::Kind::Bool) return value->as_bool();
    const double v = number();
    if (v != 0.0 && v != 1.0) fail("expected 0 or 1, got " + json_number(v));
    return v == 1.0;
  }

  int64_t integer(int64_t lo, int64_t hi) const {
    const double v = number();
    if (v != std::floor(v) || v < static_cast<double>(lo) || v > static_cast<double>(hi)) {
      fail("expected an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " + json_number(v));
    }
    return static_cast<int64_t>(v);
  }

  std::pair<double, double> range() const {
    if (array().size() != 2) fail("expected [low, high]");
    const double lo = at(0).number(), hi = at(1).number();
    if (!(lo < hi)) fail("expected low < high, got [" + json_number(lo) + ", " + json_number(hi) + "]");
    return {lo, hi};
  }

  Structure structure() const {
    Structure s{};
    if (array().size() != 3) fail("expected a 3x3x3 nested list of 0/1");
    for (size_t i = 0; i < 3; ++i) {
      const Field plane = at(i);
      if (plane.array().size() != 3) plane.fail("expected 3 rows");
      for (size_t r = 0; r < 3; ++r) {
        const Field row = plane.at(r);
        if (row.array().size() != 3) row.fail("expected 3 values");
        for (size_t c = 0; c < 3; ++c) s[i][r][c] = row.at(c).boolean_or_01();
      }
    }
    // Connected-component labelling and erosion below assume what scipy's
    // structures are: symmetric about the centre.
    for (int i = 0; i < 3; ++i)
      for (int r = 0; r < 3; ++r)
        for (int c = 0; c < 3; ++c)
          if (s[i][r][c] != s[2 - i][2 - r][2 - c]) fail("the structure must be symmetric about its centre");
    return s;
  }
};

ModelEntry read_model(const Field& m, const std::string& task) {
  ModelEntry entry;
  for (const auto& [format, file] : m["files"].object()) {
    if (!file.is_string()) m["files"][format].fail("expected a file name");
    entry.files[format] = file.as_string();
  }
  const Field input = m["input"];
  const Field shape = input["shape"];
  for (size_t d = 0; d < shape.array().size(); ++d) entry.fixed_shape.push_back(shape.at(d).integer(-1, 1 << 20));
  const size_t want_dims = task == "seg" ? 4 : 5;
  if (entry.fixed_shape.size() != want_dims) {
    shape.fail("expected " + std::to_string(want_dims) + " dimensions for the " + task + " model");
  }
  entry.channels = entry.fixed_shape[1];
  if (entry.channels < 1) shape.fail("the channel dimension must be fixed and positive");
  if (input.has("multiple_of")) {
    for (const auto& [dim, value] : input["multiple_of"].object()) {
      (void)value;
      const Field f = input["multiple_of"][dim];
      int d = -1;
      try {
        d = std::stoi(dim);
      } catch (const std::exception&) {
        f.fail("the key must be a dimension number");
      }
      entry.multiple_of[d] = f.integer(1, 1 << 16);
    }
  }
  const Field use = m["use"];
  entry.output = static_cast<int>(use["output"].integer(0, 16));
  entry.select = task == "seg" ? use["channel"].integer(0, 1 << 16) : use["index"].integer(0, 1 << 16);
  return entry;
}

}  // namespace

std::filesystem::path Manifest::model_file(const std::string& task, const std::string& format) const {
  const auto it = models.find(task);
  if (it == models.end()) throw ManifestError(path.string() + ": models." + task + ": missing");
  const auto file = it->second.files.find(format);
  if (file == it->second.files.end()) {
    throw ManifestError(path.string() + ": models." + task + ".files." + format + ": missing (export with `torchlite export --format " +
                        format + "`)");
  }
  return path.parent_path() / file->second;
}

bool Manifest::has_format(const std::string& format) const {
  for (const auto& [task, entry] : models) {
    if (entry.files.count(format) == 0) return false;
  }
  return !models.empty();
}

Manifest read_manifest(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ManifestError(path.string() + ": cannot open (is --models the folder `torchlite export` wrote?)");
  std::ostringstream text;
  text << in.rdbuf();
  Json doc;
  try {
    doc = Json::parse(text.str());
  } catch (const JsonError& e) {
    throw ManifestError(path.string() + ": not valid JSON: " + e.what());
  }
  const Field top{&path, &doc, ""};
  Manifest m;
  m.path = path;
  const int64_t version = top["format_version"].integer(0, 1 << 20);
  if (version != kManifestFormatVersion) {
    top["format_version"].fail("this program reads version " + std::to_string(kManifestFormatVersion) + ", got " +
                               std::to_string(version) + " (export the models again with this torchlite)");
  }
  m.torchlite_version = top["torchlite_version"].string();
  m.torch_version = top["torch_version"].string();
  m.device = top["device"].string();

  const Field models = top["models"];
  for (const char* task : {"seg", "cls", "mal"}) {
    if (models.has(task)) m.models[task] = read_model(models[task], task);
  }
  if (!m.models.count("seg")) models["seg"].fail("missing");
  if (!m.models.count("cls")) models["cls"].fail("missing");

  const Field pipe = top["pipeline"];
  PipelineConstants& p = m.pipeline;
  std::tie(p.hu_lo, p.hu_hi) = pipe["hu_clip"].range();
  const Field seg = pipe["segmentation"];
  p.context_slices = seg["context_slices"].integer(0, 1000);
  if (m.models["seg"].channels != 2 * p.context_slices + 1) {
    seg["context_slices"].fail("the seg model takes " + std::to_string(m.models["seg"].channels) + " channels, not 2 * " +
                               std::to_string(p.context_slices) + " + 1");
  }
  p.seg_batch_size = seg["batch_size"].integer(1, 1 << 16);
  const Field grouping = pipe["grouping"];
  p.threshold = grouping["threshold"].number();
  p.erosion_iterations = grouping["erosion_iterations"].integer(0, 1000);
  p.erosion_structure = grouping["erosion_structure"].structure();
  p.erosion_border_value = grouping["erosion_border_value"].boolean_or_01();
  p.labelling_structure = grouping["labelling_structure"].structure();
  const Field weight = grouping["center_of_mass_weight"];
  std::tie(p.weight_lo, p.weight_hi) = weight["clip"].range();
  p.weight_offset = weight["offset"].number();
  const Field crop = pipe["crop"];
  const Field size = crop["size_irc"];
  if (size.array().size() != 3) size.fail("expected 3 sizes (I, R, C)");
  for (size_t k = 0; k < 3; ++k) p.crop_size[k] = size.at(k).integer(1, 4096);
  p.crop_fill = crop["fill_hu"].number();
  std::tie(p.crop_clip_lo, p.crop_clip_hi) = crop["clip"].range();
  p.cls_batch_size = crop["batch_size"].integer(1, 1 << 16);
  return m;
}

}  // namespace torchlite::app
