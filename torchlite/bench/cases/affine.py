"""affine3d and sample_patches3d against the book's augmentation.

Group 1, the classifier's augmentation of one batch (chapter 12): 32
candidate patches of 32x48x48 HU, each flipped, offset (0.1), scaled (0.2),
rotated about the index axis and given 25 HU of Gaussian noise. The book
does it per sample in its Dataset; batching affine_grid + grid_sample is the
best plain PyTorch can do; affine3d fuses it all.

Group 2, crop and augment straight from the scan: 256 patches of 32x48x48
from a 300x512x512 int16 volume, HU clipped to [-1000, 1000], the same
augmentation. Two operator calls (crop3d, then affine3d on the crops)
against one (sample_patches3d, which reads rotated patches from the scan).
The thetas are the same augmentation in each operator's convention
(torchlite.ops.theta).
"""

from __future__ import annotations

import functools
import math

import torch

from torchlite.bench.cases.memory import write_bandwidth_case
from torchlite.bench.registry import Case, register

NOISE_STD = 25.0
SIZE = (32, 48, 48)

AUG_GROUP = "affine3d: 32x1x32x48x48, flip+offset+scale+rotate+noise"
AUG_N = 32
BOOK_LOOP = "book: per-sample affine_grid + grid_sample + randn"
BATCHED = "batched affine_grid + grid_sample + randn"
AFFINE3D = "torchlite.affine3d (noise included)"

SCAN_GROUP = "sample_patches3d vs crop3d→affine3d: 256 x 32x48x48 from 300x512x512 int16"
SCAN_SHAPE = (300, 512, 512)
SCAN_N = 256
CLIP = (-1000.0, 1000.0)
FILL = -1000.0
CROP_THEN_AFFINE = "torchlite.crop3d → torchlite.affine3d"
SAMPLE_PATCHES = "torchlite.sample_patches3d"


def book_thetas(n: int, generator: torch.Generator) -> torch.Tensor:
    """(n, 3, 4) F.affine_grid thetas as the book draws them: per-axis flip
    and scale 1 +- 0.2, a rotation in the W-H plane (about the index axis),
    offset +-0.1 in the translation column."""
    u = lambda *shape: torch.rand(*shape, generator=generator, dtype=torch.float64)  # noqa: E731
    diag = torch.where(u(n, 3) > 0.5, -1.0, 1.0) * (1 + 0.2 * (u(n, 3) * 2 - 1))
    angle = u(n) * 2 * math.pi
    rot = torch.eye(3, dtype=torch.float64).repeat(n, 1, 1)
    rot[:, 0, 0], rot[:, 0, 1] = angle.cos(), -angle.sin()
    rot[:, 1, 0], rot[:, 1, 1] = angle.sin(), angle.cos()
    theta = torch.zeros(n, 3, 4, dtype=torch.float64)
    theta[:, :, :3] = torch.diag_embed(diag) @ rot
    theta[:, :, 3] = 0.1 * (u(n, 3) * 2 - 1)
    return theta.float()


@functools.lru_cache(maxsize=1)
def _aug_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    x = torch.randn(AUG_N, 1, *SIZE, generator=g) * 300 - 500
    return x, book_thetas(AUG_N, g)


def _make_book_loop(quick: bool, device: str):
    from torchlite.ops.reference import affine3d_per_sample_reference

    x, theta = (t.to(device) for t in _aug_inputs())
    return lambda: affine3d_per_sample_reference(x, theta, padding="border", noise_std=NOISE_STD)


def _make_batched(quick: bool, device: str):
    import torch.nn.functional as F

    x, theta = (t.to(device) for t in _aug_inputs())

    def run():
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return out + torch.randn_like(out) * NOISE_STD

    return run


def _make_affine3d(quick: bool, device: str):
    from torchlite.ops.affine import affine3d

    x, theta = (t.to(device) for t in _aug_inputs())
    return lambda: affine3d(x, theta, padding="border", noise_std=NOISE_STD, seed=1)


@functools.lru_cache(maxsize=1)
def _scan_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from torchlite.ops.theta import normalized_theta_to_voxel

    g = torch.Generator().manual_seed(4321)
    volume = torch.randint(-1200, 3001, SCAN_SHAPE, dtype=torch.int16, generator=g)
    centers = torch.stack([torch.randint(0, dim, (SCAN_N,), generator=g) for dim in SCAN_SHAPE], dim=1)
    theta_norm = book_thetas(SCAN_N, g)
    theta_vox = normalized_theta_to_voxel(theta_norm.double(), SIZE).float()
    return volume, centers, theta_norm, theta_vox


def _make_crop_then_affine(quick: bool, device: str):
    from torchlite.ops.affine import affine3d
    from torchlite.ops.crop import crop3d

    volume, centers, theta_norm, _ = (t.to(device) for t in _scan_inputs())

    def run():
        crops = crop3d(volume, centers, SIZE, fill=FILL, clip=CLIP)
        return affine3d(crops, theta_norm, padding="border", noise_std=NOISE_STD, seed=1)

    return run


def _make_sample_patches(quick: bool, device: str):
    from torchlite.ops.sample_patches import sample_patches3d

    volume, centers, _, theta_vox = (t.to(device) for t in _scan_inputs())
    return lambda: sample_patches3d(volume, centers, theta_vox, SIZE, fill=FILL, clip=CLIP, noise_std=NOISE_STD, seed=1)


_AUG_NUMEL = AUG_N * SIZE[0] * SIZE[1] * SIZE[2]
_SCAN_NUMEL = SCAN_N * SIZE[0] * SIZE[1] * SIZE[2]
_BOTH = ("cpu", "cuda")

# The reference first: "vs first" is the speed-up over the book's way.
register(Case(AUG_GROUP, BOOK_LOOP, _make_book_loop, nbytes=_AUG_NUMEL * 8, devices=_BOTH))
register(Case(AUG_GROUP, BATCHED, _make_batched, nbytes=_AUG_NUMEL * 8, devices=_BOTH))
register(
    Case(
        AUG_GROUP,
        AFFINE3D,
        _make_affine3d,
        targets={BATCHED: 6.0, BOOK_LOOP: 8.0},
        nbytes=_AUG_NUMEL * 8,  # float32 read + written
        devices=_BOTH,
    )
)
register(write_bandwidth_case(AUG_GROUP, _AUG_NUMEL))

register(Case(SCAN_GROUP, CROP_THEN_AFFINE, _make_crop_then_affine, nbytes=_SCAN_NUMEL * 6, devices=_BOTH))
register(
    Case(
        SCAN_GROUP,
        SAMPLE_PATCHES,
        _make_sample_patches,
        targets={CROP_THEN_AFFINE: 1.3},
        nbytes=_SCAN_NUMEL * 6,  # int16 read + float32 written, at least
        devices=_BOTH,
    )
)
register(write_bandwidth_case(SCAN_GROUP, _SCAN_NUMEL))
