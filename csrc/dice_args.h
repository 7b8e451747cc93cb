// Input validation for the dice_loss launchers, shared by CPU and CUDA
// (host code only) so both devices reject the same inputs with the same
// words.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Exception.h>
#include <c10/util/Half.h>
#include <c10/util/accumulate.h>

#include <cmath>

#include "checks.h"

namespace torchlite {
namespace dice {

// The loss and the sums come out in the accumulation dtype: float32 for
// float16/bfloat16/float32 pred (a half-precision loss would round away the
// differences that training follows), float64 for float64 pred (gradcheck).
inline at::ScalarType acc_dtype(at::ScalarType pred_dtype) {
  return pred_dtype == at::kDouble ? at::kDouble : at::kFloat;
}

inline void check_label_dtype(const char* op, const at::Tensor& label) {
  checks::check_dtype(op, "label", label,
                      {at::kBool, at::kByte, at::kFloat, at::kHalf,
                       at::kBFloat16, at::kDouble});
}

inline void check_forward_inputs(const at::Tensor& pred,
                                 const at::Tensor& label, double eps,
                                 double fn_weight) {
  const char* op = "dice_loss";
  checks::check_dtype(op, "pred", pred,
                      {at::kFloat, at::kHalf, at::kBFloat16, at::kDouble});
  check_label_dtype(op, label);
  checks::check_same_device(op, "label", label, "pred", pred);
  TORCH_CHECK(pred.dim() >= 1, "torchlite.dice_loss: `pred` must have a batch "
              "dimension, shape (N, ...), got a 0-d tensor");
  TORCH_CHECK(pred.sizes() == label.sizes(), "torchlite.dice_loss: `pred` and "
              "`label` must have the same shape (no broadcasting), got pred ",
              pred.sizes(), " and label ", label.sizes());
  TORCH_CHECK(std::isfinite(eps) && eps >= 0, "torchlite.dice_loss: `eps` "
              "must be finite and >= 0, got ", eps);
  TORCH_CHECK(std::isfinite(fn_weight), "torchlite.dice_loss: `fn_weight` "
              "must be finite, got ", fn_weight);
}

inline void check_backward_inputs(const at::Tensor& grad,
                                  const at::Tensor& sums,
                                  const at::Tensor& label,
                                  at::ScalarType dtype) {
  const char* op = "_dice_loss_backward";
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kHalf ||
                  dtype == at::kBFloat16 || dtype == at::kDouble,
              "torchlite._dice_loss_backward: `dtype` must be Float, Half, "
              "BFloat16 or Double, got ", dtype);
  const auto acc = acc_dtype(dtype);
  TORCH_CHECK(grad.scalar_type() == acc, "torchlite._dice_loss_backward: "
              "`grad` must be ", acc, " for dtype ", dtype, ", got ",
              grad.scalar_type());
  TORCH_CHECK(sums.scalar_type() == acc, "torchlite._dice_loss_backward: "
              "`sums` must be ", acc, " for dtype ", dtype, ", got ",
              sums.scalar_type());
  check_label_dtype(op, label);
  checks::check_same_device(op, "sums", sums, "grad", grad);
  checks::check_same_device(op, "label", label, "grad", grad);
  TORCH_CHECK(label.dim() >= 1, "torchlite._dice_loss_backward: `label` must "
              "have a batch dimension, shape (N, ...), got a 0-d tensor");
  const int64_t n = label.size(0);
  TORCH_CHECK(grad.dim() == 1 && grad.size(0) == n,
              "torchlite._dice_loss_backward: `grad` must have shape (", n,
              ",) to match label's batch, got ", grad.sizes());
  TORCH_CHECK(sums.dim() == 2 && sums.size(0) == n && sums.size(1) == 4,
              "torchlite._dice_loss_backward: `sums` must have shape (", n,
              ", 4), got ", sums.sizes());
}

// Calls f with a null pointer of the label's C++ type (the type is the
// point); one switch for the CPU and CUDA launchers alike.
template <typename F>
void dispatch_label(const at::Tensor& label, F&& f) {
  switch (label.scalar_type()) {
    case at::kBool: return f(static_cast<bool*>(nullptr));
    case at::kByte: return f(static_cast<uint8_t*>(nullptr));
    case at::kHalf: return f(static_cast<c10::Half*>(nullptr));
    case at::kBFloat16: return f(static_cast<c10::BFloat16*>(nullptr));
    case at::kFloat: return f(static_cast<float*>(nullptr));
    case at::kDouble: return f(static_cast<double*>(nullptr));
    default:
      TORCH_CHECK(false, "torchlite.dice_loss: unsupported label dtype ",
                  label.scalar_type());
  }
}

// Elements per sample: the product of all but the batch dimension.
inline int64_t per_sample(const at::Tensor& t) {
  return c10::multiply_integers(t.sizes().begin() + 1, t.sizes().end());
}

}  // namespace dice
}  // namespace torchlite
