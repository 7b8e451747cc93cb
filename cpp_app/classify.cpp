#include "classify.h"

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>

#include <algorithm>
#include <vector>

namespace torchlite::app {

at::Tensor crop_candidates(const at::Tensor& volume, const at::Tensor& centers_irc, const PipelineConstants& p) {
  // Looked up once: the operator registered itself from the linked library.
  static const c10::OperatorHandle op = c10::Dispatcher::singleton().findSchemaOrThrow("torchlite::crop3d", "");
  // Boxed call: the schema's argument list, no C++ signature to keep in step.
  torch::jit::Stack stack{volume,
                          centers_irc,
                          std::vector<int64_t>(p.crop_size.begin(), p.crop_size.end()),
                          p.crop_fill,
                          /*clamp=*/false,
                          std::vector<double>{p.crop_clip_lo, p.crop_clip_hi}};
  op.callBoxed(&stack);
  return stack.at(0).toTensor();
}

at::Tensor positive_probability(Model& model, const ModelEntry& entry, const at::Tensor& crops, int64_t batch_size,
                                c10::Device device) {
  TORCH_CHECK(batch_size >= 1, "positive_probability: batch size must be >= 1, got ", batch_size);
  const int64_t n = crops.size(0);
  at::Tensor out = at::empty({n}, at::kFloat);
  for (int64_t start = 0; start < n; start += batch_size) {
    const int64_t stop = std::min(start + batch_size, n);
    const at::Tensor probs = model.run(crops.slice(0, start, stop).to(device));
    TORCH_CHECK(probs.dim() == 2 && probs.size(0) == stop - start && probs.size(1) > entry.select,
                "classifier returned shape ", probs.sizes(), " for ", stop - start, " crops; the manifest uses index ",
                entry.select);
    out.slice(0, start, stop).copy_(probs.select(1, entry.select));
  }
  return out;
}

}  // namespace torchlite::app
