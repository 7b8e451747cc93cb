// The exported models, loaded once: TorchScript files (torch::jit::load) or
// AOTInductor packages (torch::inductor::AOTIModelPackageLoader), behind one
// interface that takes a batch and returns the tensor the pipeline uses.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>

#include "manifest.h"

namespace torchlite::app {

// "<file>: <reason>" for a model file that is missing or does not load.
class ModelError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class ModelFormat { TorchScript, Aoti };

const char* format_name(ModelFormat format);  // as the manifest's "files" keys name it

class Model {
 public:
  virtual ~Model() = default;
  // The returned tensor the manifest's use.output names, on `device`, for a
  // float32 batch on `device` (any memory layout: each backend makes it the
  // layout it needs).
  virtual at::Tensor run(const at::Tensor& batch) = 0;
};

// `task` is "seg", "cls" or "mal": on the CPU, TorchScript runs seg in
// channels_last and cls/mal in channels_last_3d (oneDNN's faster layouts, as
// `torchlite analyze` runs the eager models); AOTInductor packages get
// contiguous input, the only layout they compute correctly.
std::unique_ptr<Model> load_model(const std::filesystem::path& file, ModelFormat format, const std::string& task,
                                  const ModelEntry& entry, c10::Device device);

struct Models {
  std::unique_ptr<Model> seg, cls, mal;  // mal is null when the export has none
};

Models load_models(const Manifest& manifest, ModelFormat format, c10::Device device);

}  // namespace torchlite::app
