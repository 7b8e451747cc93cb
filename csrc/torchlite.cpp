// Every torchlite operator schema, in one place.
//
// Kernels live in cpu/ and cuda/ (TORCH_LIBRARY_IMPL per dispatch key); fake
// (meta) kernels and autograd formulas are registered from Python in
// torchlite/ops/. The C++ program in cpp_app/ links this file too, so the
// schemas here are the single source of truth for both worlds.
#include <torch/library.h>

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
}
