// Every torchlite operator schema, in one place.
//
// Kernels live in cpu/ and cuda/ (TORCH_LIBRARY_IMPL per dispatch key);
// autograd kernels in autograd/ (C++, so the C++ program has them too and the
// small per-sample arithmetic costs no Python); fake (meta) kernels are
// registered from Python in torchlite/ops/. The C++ program (cpp_app/, issue
// 6) is to link this same file, so these schemas are the single source of
// truth for Python and C++ alike.
#include <torch/library.h>

#include "memory/output_pool.h"

TORCH_LIBRARY(torchlite, m) {
  // --- crop3d: N patches of size (d,h,w) around integer IRC centers ---------
  // volume (D,H,W) int16|float32, centers (N,3) int64 -> (N,1,d,h,w) float32.
  // Patch start = center - size//2. Outside voxels read `fill`; clamp=True
  // shifts the window inward instead (the book's behaviour). clip=[lo,hi]
  // clips values on read.
  m.def(
      "crop3d(Tensor volume, Tensor centers, int[3] size, float fill=-1000., "
      "bool clamp=False, float[]? clip=None) -> Tensor",
      {at::Tag::pt2_compliant_tag});
  // Same, writing into a preallocated `out` (N,1,d,h,w) float32: lets callers
  // reuse a buffer instead of paying page faults on a fresh allocation.
  m.def(
      "crop3d_out(Tensor volume, Tensor centers, int[3] size, float fill, "
      "bool clamp, float[]? clip, Tensor(a!) out) -> ()",
      {at::Tag::pt2_compliant_tag});

  // --- affine3d / affine2d: F.affine_grid + F.grid_sample(align_corners=False)
  // fused with additive Gaussian noise from a counter-based generator. ------
  // padding: "border" | "zeros" | "fill".
  m.def(
      "affine3d(Tensor input, Tensor theta, str padding=\"border\", "
      "float fill=0., float noise_std=0., int seed=0) -> Tensor",
      {at::Tag::pt2_compliant_tag});
  m.def(
      "affine2d(Tensor input, Tensor theta, str padding=\"border\", "
      "float fill=0., float noise_std=0., int seed=0) -> Tensor",
      {at::Tag::pt2_compliant_tag});

  // --- sample_patches3d: crop + affine + noise straight from the scan -------
  // theta (N,3,4) = [A | t] in voxel units, IRC order. Output voxel p
  // (relative to the patch center) reads volume at center + A p + t.
  m.def(
      "sample_patches3d(Tensor volume, Tensor centers, Tensor theta, int[3] size, "
      "float fill=-1000., float[]? clip=None, float noise_std=0., int seed=0) -> Tensor",
      {at::Tag::pt2_compliant_tag});

  // --- dice ------------------------------------------------------------------
  // Per-sample soft Dice; fn_weight adds the book's recall term
  // w * dice(pred * label, label).
  m.def(
      "dice_loss(Tensor pred, Tensor label, float eps=1., float fn_weight=0.) -> Tensor",
      {at::Tag::pt2_compliant_tag});
  // dice_loss's autograd halves, glued by a C++ autograd kernel
  // (csrc/autograd/dice_loss_autograd.cpp): the forward also returns the
  // per-sample sums (N,4) = (sum p*l, sum p, sum l, sum p*l^2) that the
  // one-pass backward needs; the backward returns
  // d(sum_n grad[n] * loss[n]) / d pred in `dtype` (pred's dtype).
  m.def(
      "_dice_loss_forward(Tensor pred, Tensor label, float eps, float fn_weight) "
      "-> (Tensor, Tensor)",
      {at::Tag::pt2_compliant_tag});
  m.def(
      "_dice_loss_backward(Tensor grad, Tensor sums, Tensor label, float eps, "
      "float fn_weight, ScalarType dtype) -> Tensor",
      {at::Tag::pt2_compliant_tag});

  // --- the CPU kernels' output cache (memory/output_pool.h) --------------------
  // No tensor arguments, so one kernel serves every backend.
  m.def("_output_cache_stats() -> int[]", &torchlite::cpu::output_cache_stats);
  m.def("_output_cache_release() -> ()", &torchlite::cpu::output_cache_release);
}
