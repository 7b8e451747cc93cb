// Soft Dice loss arithmetic, shared by the CPU and CUDA kernels.
//
// Per sample, with p = pred and l = label over all elements of the sample:
//   A = sum(p l),  P = sum(p),  L = sum(l),  B = sum(p l^2)
//   dice(p, l)    = 1 - (2A + eps) / (P + L + eps)
//   dice(p l, l)  = 1 - (2B + eps) / (A + L + eps)       (the book's fnLoss:
//                   sum((p l) l) = B, sum(p l) = A)
//   loss = dice(p, l) + w * dice(p l, l)
// A binary label has l^2 = l, so B = A; a soft (float) label needs B.
// Since the loss depends on pred only through (A, P, B), its gradient is
//   dloss/dp_i = cA l_i + cP + cB l_i^2
// with per-sample coefficients (below): one pass forward for the four sums,
// one elementwise pass backward.
#pragma once

#include "kernels/common.h"

namespace torchlite {
namespace kernels {

// Column order of the (N, 4) sums tensor.
constexpr int kDiceSumPL = 0;   // A = sum(p l)
constexpr int kDiceSumP = 1;    // P = sum(p)
constexpr int kDiceSumL = 2;    // L = sum(l)
constexpr int kDiceSumPLL = 3;  // B = sum(p l^2)
constexpr int kDiceNumSums = 4;

// Per-element contribution to the four sums. `acc_t` is float for
// float/half/bfloat16 pred and double for double pred.
// B is summed even for bool labels (where it equals A): the extra multiply-add
// is free in a memory-bound loop, and gcc vectorizes the four-sum loop where
// it gives up on a three-sum one.
template <typename acc_t>
TL_HOST_DEVICE void dice_accumulate(acc_t p, acc_t l, acc_t& a, acc_t& s_p,
                                    acc_t& s_l, acc_t& b) {
  acc_t pl = p * l;
  a += pl;
  s_p += p;
  s_l += l;
  b += pl * l;
}

// The per-sample loss from the sums. Evaluated in double: it runs once per
// sample, and 1 - ratio cancels digits when the prediction is good.
TL_HOST_DEVICE double dice_loss_from_sums(double a, double s_p, double s_l,
                                          double b, double eps, double w) {
  double loss = 1.0 - (2.0 * a + eps) / (s_p + s_l + eps);
  if (w != 0.0) loss += w * (1.0 - (2.0 * b + eps) / (a + s_l + eps));
  return loss;
}

// Gradient of g * loss with respect to the sums; dL is only needed for a
// label gradient.
struct DiceGradCoeffs {
  double d_a, d_p, d_l, d_b;
};

TL_HOST_DEVICE DiceGradCoeffs dice_grad_coeffs(double a, double s_p,
                                               double s_l, double b,
                                               double eps, double w,
                                               double g) {
  double den1 = s_p + s_l + eps;
  double r1 = (2.0 * a + eps) / (den1 * den1);  // -d dice(p,l) / dP
  DiceGradCoeffs c;
  c.d_a = -2.0 / den1;
  c.d_p = r1;
  c.d_l = r1;
  c.d_b = 0.0;
  if (w != 0.0) {
    double den2 = a + s_l + eps;
    double r2 = (2.0 * b + eps) / (den2 * den2);
    c.d_a += w * r2;
    c.d_l += w * r2;
    c.d_b = -2.0 * w / den2;
  }
  c.d_a *= g;
  c.d_p *= g;
  c.d_l *= g;
  c.d_b *= g;
  return c;
}

// dloss/dp_i for one element. Written as c_p + l (c_a + c_b l) so the
// compiler emits two fused multiply-adds per element.
template <typename acc_t>
TL_HOST_DEVICE acc_t dice_grad_pred(acc_t c_a, acc_t c_p, acc_t c_b, acc_t l) {
  return c_p + l * (c_a + c_b * l);
}

}  // namespace kernels
}  // namespace torchlite
