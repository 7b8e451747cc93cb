// Input validation shared by the CPU and CUDA launchers (host code only).
//
// Every message names the operator and the argument, then says what was
// expected and what was given, so a user can fix the call without reading
// the kernel.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <initializer_list>
#include <sstream>
#include <string>

namespace torchlite {
namespace checks {

inline std::string dtype_list(std::initializer_list<at::ScalarType> types) {
  std::ostringstream out;
  bool first = true;
  for (auto t : types) {
    out << (first ? "" : " or ") << c10::toString(t);
    first = false;
  }
  return out.str();
}

inline void check_dtype(const char* op, const char* arg, const at::Tensor& t,
                        std::initializer_list<at::ScalarType> allowed) {
  for (auto a : allowed) {
    if (t.scalar_type() == a) return;
  }
  TORCH_CHECK_TYPE(false, "torchlite.", op, ": `", arg, "` must be ",
                   dtype_list(allowed), ", got ", t.scalar_type());
}

inline void check_dim(const char* op, const char* arg, const at::Tensor& t,
                      int64_t ndim, const char* layout) {
  TORCH_CHECK(t.dim() == ndim, "torchlite.", op, ": `", arg, "` must be ",
              ndim, "-D ", layout, ", got shape ", t.sizes());
}

// Same device as `ref` (named `ref_arg`), so a kernel never dereferences a
// pointer from the wrong memory space.
inline void check_same_device(const char* op, const char* arg,
                              const at::Tensor& t, const char* ref_arg,
                              const at::Tensor& ref) {
  TORCH_CHECK(t.device() == ref.device(), "torchlite.", op, ": `", arg,
              "` is on ", t.device(), " but `", ref_arg, "` is on ",
              ref.device(), "; move both to the same device");
}

inline void check_size3(const char* op, at::IntArrayRef size) {
  TORCH_CHECK(size.size() == 3, "torchlite.", op,
              ": `size` must have 3 entries (d, h, w), got ", size.size());
  for (auto s : size) {
    TORCH_CHECK(s > 0, "torchlite.", op,
                ": `size` entries must be positive, got ", size);
  }
}

}  // namespace checks
}  // namespace torchlite
