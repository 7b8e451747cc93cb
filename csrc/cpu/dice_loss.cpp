// CPU kernels of dice_loss and its fused backward (math in kernels/dice.h).
//
// Forward: each sample is cut into fixed chunks of kChunk elements; a chunk
// sums into W accumulators per sum (lane j takes elements j, j+W, ...) that
// the compiler keeps in vector registers, then folds its lanes in a fixed
// tree. Chunk partials are added per sample, in chunk order, in double.
// The order of every addition is therefore fixed by shape and dtypes: the
// result is bitwise the same for any thread count (at::parallel_for only
// decides which thread computes which chunk).
// Backward: one elementwise pass, grad = cP + l (cA + cB l) per sample.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <c10/util/accumulate.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <tuple>
#include <vector>

#include "memory/output_pool.h"
#include "kernels/dice.h"
#include "dice_args.h"

// The loops below are plain C++ that gcc vectorizes; the baseline x86-64
// ISA only has 4-wide SSE2, so the hot functions are also compiled for
// AVX2+FMA and AVX-512 and picked at load time (an ifunc). Elsewhere (other
// compilers, other architectures) the portable version is all there is.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11 && \
    defined(__x86_64__) && defined(__linux__)
#define TL_DICE_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define TL_DICE_CLONES
#endif

// The chunk loop must be inlined into each clone to be compiled for its ISA.
#if defined(__GNUC__)
#define TL_DICE_INLINE inline __attribute__((always_inline))
#else
#define TL_DICE_INLINE inline
#endif

namespace torchlite {
namespace {

using kernels::kDiceNumSums;

// Accumulator lanes per sum. gcc sizes its vectors by the narrowest type in
// the loop, so byte labels need 64 lanes to fill AVX-512 registers (3x
// faster than 16 there, measured); float labels are fastest with 16.
template <typename L>
constexpr int kLanes = sizeof(L) == 1 ? 64 : 16;
// Elements per reduction unit: sets the summation order (so it must not
// depend on the thread count) and keeps each lane's float sum short
// (at most kChunk / 16 = 512 terms).
constexpr int64_t kChunk = 8192;
// Less work than this per task (~15 us) costs more in thread wake-up than
// it saves; the book's 16 x 64x64 batch runs on one thread.
constexpr int64_t kMinTaskElems = 131072;

// Bool labels are read as bytes; any nonzero byte counts as 1. Written as
// min(int(byte), 1): gcc vectorizes that, but not `byte != 0` (measured).
template <typename acc_t>
inline acc_t load_label(const bool* x, int64_t i) {
  return static_cast<acc_t>(
      kernels::tl_min<int>(reinterpret_cast<const uint8_t*>(x)[i], 1));
}

template <typename acc_t, typename T>
inline acc_t load_label(const T* x, int64_t i) {
  return static_cast<acc_t>(x[i]);
}

template <typename acc_t, typename P, typename L>
TL_DICE_INLINE void chunk_sums(const P* p, const L* l, int64_t len,
                               acc_t* out) {
  constexpr int W = kLanes<L>;
  acc_t a[W] = {}, sp[W] = {}, sl[W] = {}, b[W] = {};
  int64_t i = 0;
  for (; i + W <= len; i += W) {
    for (int j = 0; j < W; ++j) {
      kernels::dice_accumulate(static_cast<acc_t>(p[i + j]),
                               load_label<acc_t>(l, i + j), a[j], sp[j], sl[j],
                               b[j]);
    }
  }
  for (int j = 0; i < len; ++i, ++j) {
    kernels::dice_accumulate(static_cast<acc_t>(p[i]), load_label<acc_t>(l, i),
                             a[j], sp[j], sl[j], b[j]);
  }
  for (int w = W / 2; w > 0; w /= 2) {
    for (int j = 0; j < w; ++j) {
      a[j] += a[j + w];
      sp[j] += sp[j + w];
      sl[j] += sl[j + w];
      b[j] += b[j + w];
    }
  }
  out[kernels::kDiceSumPL] = a[0];
  out[kernels::kDiceSumP] = sp[0];
  out[kernels::kDiceSumL] = sl[0];
  out[kernels::kDiceSumPLL] = b[0];
}

// Units [u0, u1) of the (sample, chunk) grid; partial has 4 sums per unit.
template <typename acc_t, typename P, typename L>
TL_DICE_CLONES void sums_units(const P* pred, const L* label, int64_t m,
                               int64_t chunks, int64_t u0, int64_t u1,
                               acc_t* partial) {
  for (int64_t u = u0; u < u1; ++u) {
    const int64_t begin = (u / chunks) * m + (u % chunks) * kChunk;
    const int64_t len = std::min(kChunk, m - (u % chunks) * kChunk);
    chunk_sums(pred + begin, label + begin, len,
                        partial + u * kDiceNumSums);
  }
}

// coeffs holds (cA, cP, cB) per sample.
template <typename acc_t, typename P, typename L>
TL_DICE_CLONES void grad_units(const L* label, const acc_t* coeffs, int64_t m,
                               int64_t chunks, int64_t u0, int64_t u1,
                               P* grad) {
  for (int64_t u = u0; u < u1; ++u) {
    const int64_t n = u / chunks;
    const int64_t begin = n * m + (u % chunks) * kChunk;
    const int64_t len = std::min(kChunk, m - (u % chunks) * kChunk);
    const acc_t c_a = coeffs[3 * n], c_p = coeffs[3 * n + 1],
                c_b = coeffs[3 * n + 2];
    const L* l = label + begin;
    P* g = grad + begin;
    for (int64_t i = 0; i < len; ++i) {
      g[i] = static_cast<P>(
          kernels::dice_grad_pred(c_a, c_p, c_b, load_label<acc_t>(l, i)));
    }
  }
}

int64_t grain_units(int64_t m) {
  const int64_t unit = std::max<int64_t>(1, std::min(kChunk, m));
  return std::max<int64_t>(1, kMinTaskElems / unit);
}

std::tuple<at::Tensor, at::Tensor> dice_loss_forward_cpu(
    const at::Tensor& pred, const at::Tensor& label, double eps,
    double fn_weight) {
  dice::check_forward_inputs(pred, label, eps, fn_weight);
  const int64_t n = pred.size(0);
  const int64_t m = dice::per_sample(pred);
  const auto opts = pred.options().dtype(dice::acc_dtype(pred.scalar_type()));
  at::Tensor loss = at::empty({n}, opts);
  at::Tensor sums = at::empty({n, kDiceNumSums}, opts);
  if (n == 0) return {loss, sums};
  const at::Tensor p = pred.contiguous();
  const at::Tensor l = label.contiguous();
  const int64_t chunks = (m + kChunk - 1) / kChunk;
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, pred.scalar_type(), "dice_loss", [&] {
        using P = scalar_t;
        using acc_t = at::opmath_type<P>;
        dice::dispatch_label(l, [&](auto* tag) {
          using L = std::remove_pointer_t<decltype(tag)>;
          std::vector<acc_t> partial(n * chunks * kDiceNumSums);
          const P* pp = p.const_data_ptr<P>();
          const L* lp = static_cast<const L*>(l.const_data_ptr());
          at::parallel_for(0, n * chunks, grain_units(m),
                           [&](int64_t u0, int64_t u1) {
                             sums_units<acc_t>(pp, lp, m, chunks, u0, u1,
                                               partial.data());
                           });
          acc_t* sp = sums.mutable_data_ptr<acc_t>();
          acc_t* lossp = loss.mutable_data_ptr<acc_t>();
          for (int64_t s = 0; s < n; ++s) {
            double tot[kDiceNumSums] = {};
            for (int64_t c = 0; c < chunks; ++c) {
              for (int k = 0; k < kDiceNumSums; ++k) {
                tot[k] += partial[(s * chunks + c) * kDiceNumSums + k];
              }
            }
            // The loss is computed from the sums as stored, the same numbers
            // the backward reads.
            acc_t* row = sp + s * kDiceNumSums;
            for (int k = 0; k < kDiceNumSums; ++k) row[k] = acc_t(tot[k]);
            lossp[s] = acc_t(kernels::dice_loss_from_sums(
                row[kernels::kDiceSumPL], row[kernels::kDiceSumP],
                row[kernels::kDiceSumL], row[kernels::kDiceSumPLL], eps,
                fn_weight));
          }
        });
      });
  return {loss, sums};
}

at::Tensor dice_loss_cpu(const at::Tensor& pred, const at::Tensor& label,
                         double eps, double fn_weight) {
  return std::get<0>(dice_loss_forward_cpu(pred, label, eps, fn_weight));
}

at::Tensor dice_loss_backward_cpu(const at::Tensor& grad,
                                  const at::Tensor& sums,
                                  const at::Tensor& label, double eps,
                                  double fn_weight, at::ScalarType dtype) {
  dice::check_backward_inputs(grad, sums, label, dtype);
  at::Tensor out = cpu::empty_output(label.sizes(), dtype);
  const int64_t n = label.size(0);
  const int64_t m = dice::per_sample(label);
  if (out.numel() == 0) return out;
  const at::Tensor l = label.contiguous();
  const int64_t chunks = (m + kChunk - 1) / kChunk;
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, dtype, "_dice_loss_backward", [&] {
        using P = scalar_t;
        using acc_t = at::opmath_type<P>;
        const at::Tensor g = grad.contiguous();
        const at::Tensor s = sums.contiguous();
        const acc_t* gp = g.const_data_ptr<acc_t>();
        const acc_t* sp = s.const_data_ptr<acc_t>();
        std::vector<acc_t> coeffs(3 * n);
        for (int64_t i = 0; i < n; ++i) {
          const acc_t* row = sp + i * kDiceNumSums;
          const auto c = kernels::dice_grad_coeffs(
              row[kernels::kDiceSumPL], row[kernels::kDiceSumP],
              row[kernels::kDiceSumL], row[kernels::kDiceSumPLL], eps,
              fn_weight, gp[i]);
          coeffs[3 * i] = acc_t(c.d_a);
          coeffs[3 * i + 1] = acc_t(c.d_p);
          coeffs[3 * i + 2] = acc_t(c.d_b);
        }
        dice::dispatch_label(l, [&](auto* tag) {
          using L = std::remove_pointer_t<decltype(tag)>;
          const L* lp = static_cast<const L*>(l.const_data_ptr());
          P* op = out.mutable_data_ptr<P>();
          at::parallel_for(0, n * chunks, grain_units(m),
                           [&](int64_t u0, int64_t u1) {
                             grad_units<acc_t>(lp, coeffs.data(), m, chunks,
                                               u0, u1, op);
                           });
        });
      });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(torchlite, CPU, m) {
  m.impl("dice_loss", &dice_loss_cpu);
  m.impl("_dice_loss_forward", &dice_loss_forward_cpu);
  m.impl("_dice_loss_backward", &dice_loss_backward_cpu);
}

}  // namespace torchlite
