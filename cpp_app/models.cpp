#include "models.h"

#include <ATen/ATen.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/serialization/import.h>

#include <system_error>
#include <utility>
#include <vector>

namespace torchlite::app {

namespace {

// c10::Error's what() carries a backtrace over many lines: the first is the message.
std::string first_line(const std::exception& e) {
  const std::string what = e.what();
  return what.substr(0, what.find('\n'));
}

at::MemoryFormat fast_layout(const std::string& task, int64_t dims) {
  if (dims == 4) return at::MemoryFormat::ChannelsLast;
  if (dims == 5) return at::MemoryFormat::ChannelsLast3d;
  (void)task;
  return at::MemoryFormat::Contiguous;
}

class TorchScriptModel final : public Model {
 public:
  TorchScriptModel(torch::jit::Module module, std::string task, int output, c10::Device device)
      : module_(std::move(module)), task_(std::move(task)), output_(output), device_(device) {}

  at::Tensor run(const at::Tensor& batch) override {
    const at::Tensor x = device_.is_cpu() ? batch.contiguous(fast_layout(task_, batch.dim())) : batch.contiguous();
    const c10::IValue out = module_.forward({x});
    if (out.isTensor()) {
      TORCH_CHECK(output_ == 0, task_, " model returned one tensor; the manifest uses output ", output_);
      return out.toTensor();
    }
    TORCH_CHECK(out.isTuple(), task_, " model returned neither a tensor nor a tuple of tensors");
    const auto& items = out.toTupleRef().elements();
    TORCH_CHECK(output_ < static_cast<int>(items.size()), task_, " model returned ", items.size(),
                " outputs; the manifest uses output ", output_);
    return items[output_].toTensor();
  }

 private:
  torch::jit::Module module_;
  std::string task_;
  int output_;
  c10::Device device_;
};

class AotiModel final : public Model {
 public:
  AotiModel(std::unique_ptr<torch::inductor::AOTIModelPackageLoader> loader, std::string task, int output)
      : loader_(std::move(loader)), task_(std::move(task)), output_(output) {}

  at::Tensor run(const at::Tensor& batch) override {
    // A package is compiled for contiguous strides and does not check them.
    std::vector<at::Tensor> out = loader_->run({batch.contiguous()});
    TORCH_CHECK(output_ < static_cast<int>(out.size()), task_, " package returned ", out.size(),
                " outputs; the manifest uses output ", output_);
    return out[output_];
  }

 private:
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> loader_;
  std::string task_;
  int output_;
};

}  // namespace

const char* format_name(ModelFormat format) { return format == ModelFormat::Aoti ? "aoti" : "torchscript"; }

std::unique_ptr<Model> load_model(const std::filesystem::path& file, ModelFormat format, const std::string& task,
                                  const ModelEntry& entry, c10::Device device) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(file, ec)) {
    throw ModelError(file.string() + ": no such " + task + " model file (the manifest names it)");
  }
  try {
    if (format == ModelFormat::TorchScript) {
      torch::jit::Module module = torch::jit::load(file.string(), device);
      module.eval();
      return std::make_unique<TorchScriptModel>(std::move(module), task, entry.output, device);
    }
    auto loader = std::make_unique<torch::inductor::AOTIModelPackageLoader>(
        file.string(), "model", /*run_single_threaded=*/false, /*num_runners=*/1,
        device.is_cuda() ? device.index() : c10::DeviceIndex(-1));
    return std::make_unique<AotiModel>(std::move(loader), task, entry.output);
  } catch (const std::exception& e) {
    throw ModelError(file.string() + ": cannot load as " + format_name(format) + ": " + first_line(e));
  }
}

Models load_models(const Manifest& manifest, ModelFormat format, c10::Device device) {
  Models models;
  const std::string fmt = format_name(format);
  models.seg = load_model(manifest.model_file("seg", fmt), format, "seg", manifest.models.at("seg"), device);
  models.cls = load_model(manifest.model_file("cls", fmt), format, "cls", manifest.models.at("cls"), device);
  if (manifest.models.count("mal")) {
    models.mal = load_model(manifest.model_file("mal", fmt), format, "mal", manifest.models.at("mal"), device);
  }
  return models;
}

}  // namespace torchlite::app
