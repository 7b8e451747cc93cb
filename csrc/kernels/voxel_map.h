// Where each output voxel reads from, as one affine map per sample in voxel
// index units: position[i] = sum_j m[i][j] * k[j] + b[i], where k is the
// output voxel's index and axes run in index order ((z, y, x) = (D, H, W) =
// IRC in 3D, (y, x) in 2D). The kernels only ever see this map; the two
// theta conventions of the operators are converted into it here, on the
// host for CPU launches and per thread on CUDA (no host-device round trip).
#pragma once

#include "kernels/common.h"

#include <cstdint>

namespace torchlite {
namespace kernels {

template <int K>
struct VoxelMap {
  double m[K][K];
  double b[K];
};

// theta: K x (K+1), row-major, F.affine_grid convention (align_corners=False):
// normalized coordinates in [-1, 1] across the voxel edges, rows and columns
// in (x, y[, z]) order. With u(k) = (2k + 1)/S - 1 the normalized coordinate
// of index k on an axis of S voxels and its inverse k(u) = (S u + S - 1)/2,
// output index k_j reads source index
//   k(sum_j theta[a][j'] u_j(k_j) + theta[a][K])   on axis i = K-1-a,
// which expands to m[i][j] = theta[a][j'] S_i / S_j and
//   b[i] = S_i/2 (sum_j theta[a][j'] (1/S_j - 1) + theta[a][K]) + (S_i - 1)/2,
// with a = K-1-i and j' = K-1-j (index order is the reverse of xyz order).
// Input and output have the same spatial size `size` (index order).
template <int K>
TL_HOST_DEVICE VoxelMap<K> map_from_normalized_theta(const double* theta, const int32_t* size) {
  VoxelMap<K> map;
  for (int i = 0; i < K; ++i) {
    const double* row = theta + (K - 1 - i) * (K + 1);
    const double si = static_cast<double>(size[i]);
    double acc = row[K];
    for (int j = 0; j < K; ++j) {
      const double sj = static_cast<double>(size[j]);
      const double t = row[K - 1 - j];
      map.m[i][j] = t * si / sj;
      acc += t * (1.0 / sj - 1.0);
    }
    map.b[i] = 0.5 * si * acc + 0.5 * (si - 1.0);
  }
  return map;
}

// sample_patches3d: theta = [A | t], 3 x 4 row-major, voxel units, IRC order.
// Output voxel k has offset p = k - size//2 from the patch center and reads
// center + A p + t, i.e. m = A and b = center + t - A (size//2).
TL_HOST_DEVICE VoxelMap<3> map_from_patch_theta(const double* theta, const double* center, const int32_t* size) {
  VoxelMap<3> map;
  for (int i = 0; i < 3; ++i) {
    const double* row = theta + i * 4;
    double acc = center[i] + row[3];
    for (int j = 0; j < 3; ++j) {
      map.m[i][j] = row[j];
      acc -= row[j] * static_cast<double>(size[j] / 2);
    }
    map.b[i] = acc;
  }
  return map;
}

}  // namespace kernels
}  // namespace torchlite
