// CUDA kernels of dice_loss and its fused backward (see csrc/cpu/dice_loss.cpp;
// math in kernels/dice.h).
//
// Forward, deterministic in two passes: each block sums one chunk of
// kChunk elements of one sample (thread t takes elements t, t+kThreads, ...
// in order, then a fixed shared-memory tree), writing 4 partial sums; a
// second kernel, one block per sample, adds that sample's partials in double
// in a fixed order and evaluates the loss. No atomics, so the result depends
// on the shape alone. Backward: one block per chunk, elementwise.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <c10/util/accumulate.h>
#include <torch/library.h>

#include <climits>
#include <cstdint>
#include <tuple>

#include "dice_args.h"
#include "kernels/dice.h"

namespace torchlite {
namespace {

using kernels::kDiceNumSums;

constexpr int kThreads = 256;
constexpr int kPerThread = 16;
constexpr int64_t kChunk = int64_t{kThreads} * kPerThread;

// Bool labels are read as bytes; any nonzero byte counts as 1.
template <typename acc_t>
__device__ __forceinline__ acc_t load_label(const bool* x, int64_t i) {
  return static_cast<acc_t>(
      kernels::tl_min<int>(reinterpret_cast<const uint8_t*>(x)[i], 1));
}

template <typename acc_t, typename T>
__device__ __forceinline__ acc_t load_label(const T* x, int64_t i) {
  return static_cast<acc_t>(x[i]);
}

// Fixed-shape tree over kThreads values per sum, result in s[k][0].
template <typename T>
__device__ __forceinline__ void block_tree_sum(T (*s)[kThreads], int tid) {
  for (int w = kThreads / 2; w > 0; w /= 2) {
    __syncthreads();
    if (tid < w) {
      for (int k = 0; k < kDiceNumSums; ++k) s[k][tid] += s[k][tid + w];
    }
  }
  __syncthreads();
}

template <typename acc_t, typename P, typename L>
__global__ void __launch_bounds__(kThreads)
    dice_partial_kernel(const P* __restrict__ pred, const L* __restrict__ label,
                        int64_t m, int64_t chunks, acc_t* __restrict__ partial) {
  __shared__ acc_t s[kDiceNumSums][kThreads];
  const int tid = threadIdx.x;
  const int64_t u = blockIdx.x;
  const int64_t c = u % chunks;
  const int64_t base = (u / chunks) * m + c * kChunk;
  const int64_t len = kernels::tl_min<int64_t>(kChunk, m - c * kChunk);
  acc_t a = 0, sp = 0, sl = 0, b = 0;
  for (int64_t i = tid; i < len; i += kThreads) {
    kernels::dice_accumulate(static_cast<acc_t>(pred[base + i]),
                             load_label<acc_t>(label, base + i), a, sp, sl, b);
  }
  s[kernels::kDiceSumPL][tid] = a;
  s[kernels::kDiceSumP][tid] = sp;
  s[kernels::kDiceSumL][tid] = sl;
  s[kernels::kDiceSumPLL][tid] = b;
  block_tree_sum(s, tid);
  if (tid < kDiceNumSums) partial[u * kDiceNumSums + tid] = s[tid][0];
}

template <typename acc_t>
__global__ void __launch_bounds__(kThreads)
    dice_finish_kernel(const acc_t* __restrict__ partial, int64_t chunks,
                       double eps, double fn_weight, acc_t* __restrict__ sums,
                       acc_t* __restrict__ loss) {
  __shared__ double s[kDiceNumSums][kThreads];
  const int tid = threadIdx.x;
  const int64_t n = blockIdx.x;
  double t[kDiceNumSums] = {0.0, 0.0, 0.0, 0.0};
  for (int64_t c = tid; c < chunks; c += kThreads) {
    const acc_t* p = partial + (n * chunks + c) * kDiceNumSums;
    for (int k = 0; k < kDiceNumSums; ++k) t[k] += static_cast<double>(p[k]);
  }
  for (int k = 0; k < kDiceNumSums; ++k) s[k][tid] = t[k];
  block_tree_sum(s, tid);
  if (tid == 0) {
    // The loss is computed from the sums as stored, the numbers the
    // backward reads.
    acc_t r[kDiceNumSums];
    for (int k = 0; k < kDiceNumSums; ++k) {
      r[k] = static_cast<acc_t>(s[k][0]);
      sums[n * kDiceNumSums + k] = r[k];
    }
    loss[n] = static_cast<acc_t>(kernels::dice_loss_from_sums(
        r[kernels::kDiceSumPL], r[kernels::kDiceSumP], r[kernels::kDiceSumL],
        r[kernels::kDiceSumPLL], eps, fn_weight));
  }
}

template <typename acc_t, typename P, typename L>
__global__ void __launch_bounds__(kThreads)
    dice_grad_kernel(const acc_t* __restrict__ grad,
                     const acc_t* __restrict__ sums,
                     const L* __restrict__ label, int64_t m, int64_t chunks,
                     double eps, double fn_weight, P* __restrict__ out) {
  __shared__ acc_t coeff[3];
  const int tid = threadIdx.x;
  const int64_t u = blockIdx.x;
  const int64_t n = u / chunks;
  const int64_t c = u % chunks;
  if (tid == 0) {
    const acc_t* r = sums + n * kDiceNumSums;
    const auto k = kernels::dice_grad_coeffs(
        r[kernels::kDiceSumPL], r[kernels::kDiceSumP], r[kernels::kDiceSumL],
        r[kernels::kDiceSumPLL], eps, fn_weight, grad[n]);
    coeff[0] = static_cast<acc_t>(k.d_a);
    coeff[1] = static_cast<acc_t>(k.d_p);
    coeff[2] = static_cast<acc_t>(k.d_b);
  }
  __syncthreads();
  const acc_t c_a = coeff[0], c_p = coeff[1], c_b = coeff[2];
  const int64_t base = n * m + c * kChunk;
  const int64_t len = kernels::tl_min<int64_t>(kChunk, m - c * kChunk);
  for (int64_t i = tid; i < len; i += kThreads) {
    out[base + i] = static_cast<P>(kernels::dice_grad_pred(
        c_a, c_p, c_b, load_label<acc_t>(label, base + i)));
  }
}

unsigned int grid_size(int64_t blocks) {
  TORCH_CHECK(blocks <= INT_MAX, "torchlite.dice_loss: input too large (",
              blocks, " chunks of ", kChunk, " elements)");
  return static_cast<unsigned int>(blocks);
}

std::tuple<at::Tensor, at::Tensor> dice_loss_forward_cuda(
    const at::Tensor& pred, const at::Tensor& label, double eps,
    double fn_weight) {
  dice::check_forward_inputs(pred, label, eps, fn_weight);
  const c10::cuda::CUDAGuard device_guard(pred.device());
  const int64_t n = pred.size(0);
  const int64_t m = dice::per_sample(pred);
  const auto opts = pred.options().dtype(dice::acc_dtype(pred.scalar_type()));
  at::Tensor loss = at::empty({n}, opts);
  at::Tensor sums = at::empty({n, kDiceNumSums}, opts);
  if (n == 0) return {loss, sums};
  const at::Tensor p = pred.contiguous();
  const at::Tensor l = label.contiguous();
  const int64_t chunks = (m + kChunk - 1) / kChunk;
  at::Tensor partial = at::empty({n * chunks * kDiceNumSums}, opts);
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, pred.scalar_type(), "dice_loss", [&] {
        using P = scalar_t;
        using acc_t = at::opmath_type<P>;
        dice::dispatch_label(l, [&](auto* tag) {
          using L = std::remove_pointer_t<decltype(tag)>;
          if (chunks > 0) {
            dice_partial_kernel<acc_t, P, L>
                <<<grid_size(n * chunks), kThreads, 0, stream>>>(
                    p.const_data_ptr<P>(),
                    static_cast<const L*>(l.const_data_ptr()), m, chunks,
                    partial.mutable_data_ptr<acc_t>());
            C10_CUDA_KERNEL_LAUNCH_CHECK();
          }
        });
        dice_finish_kernel<acc_t><<<grid_size(n), kThreads, 0, stream>>>(
            partial.const_data_ptr<acc_t>(), chunks, eps, fn_weight,
            sums.mutable_data_ptr<acc_t>(), loss.mutable_data_ptr<acc_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return {loss, sums};
}

at::Tensor dice_loss_cuda(const at::Tensor& pred, const at::Tensor& label,
                          double eps, double fn_weight) {
  return std::get<0>(dice_loss_forward_cuda(pred, label, eps, fn_weight));
}

at::Tensor dice_loss_backward_cuda(const at::Tensor& grad,
                                   const at::Tensor& sums,
                                   const at::Tensor& label, double eps,
                                   double fn_weight, at::ScalarType dtype) {
  dice::check_backward_inputs(grad, sums, label, dtype);
  const c10::cuda::CUDAGuard device_guard(label.device());
  at::Tensor out = at::empty(label.sizes(), label.options().dtype(dtype));
  if (out.numel() == 0) return out;
  const int64_t n = label.size(0);
  const int64_t m = dice::per_sample(label);
  const at::Tensor l = label.contiguous();
  const at::Tensor g = grad.contiguous();
  const at::Tensor s = sums.contiguous();
  const int64_t chunks = (m + kChunk - 1) / kChunk;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, dtype, "_dice_loss_backward", [&] {
        using P = scalar_t;
        using acc_t = at::opmath_type<P>;
        dice::dispatch_label(l, [&](auto* tag) {
          using L = std::remove_pointer_t<decltype(tag)>;
          dice_grad_kernel<acc_t, P, L>
              <<<grid_size(n * chunks), kThreads, 0, stream>>>(
                  g.const_data_ptr<acc_t>(), s.const_data_ptr<acc_t>(),
                  static_cast<const L*>(l.const_data_ptr()), m, chunks, eps,
                  fn_weight, out.mutable_data_ptr<P>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
      });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(torchlite, CUDA, m) {
  m.impl("dice_loss", &dice_loss_cuda);
  m.impl("_dice_loss_forward", &dice_loss_forward_cuda);
  m.impl("_dice_loss_backward", &dice_loss_backward_cuda);
}

}  // namespace torchlite
