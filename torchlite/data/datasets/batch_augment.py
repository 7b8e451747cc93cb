"""Augment a whole batch of crops in one ``affine3d`` call, on its device.

The book's chapter 12 augments each candidate in its DataLoader worker on
the CPU (one ``affine_grid`` + ``grid_sample`` + ``randn`` per sample);
chapter 13 moved augmentation to the GPU, one call per batch, but with one
transform for the whole batch. :class:`BatchAugment3d` does the batched
version with a transform per sample: the dataset (``augment="batch"``)
returns plain crops, and the training loop calls ``augment(x.to(device))``.

The book's semantics are kept: thetas in ``F.affine_grid`` convention
relative to the crop, ``padding="border"`` (the crop's edge voxels are
repeated where a rotation reaches past it; the per-sample path reads the
real scan there instead), Gaussian noise added afterwards.

Draws come from a generator seeded by (seed, epoch) and advance batch by
batch, so a run is reproducible as long as batches arrive in the same order
(DataLoader delivers them in order whatever its worker count). It runs in
the training process; as a DataLoader ``collate_fn`` it would run in the
workers, each with a copy of the same generator, and repeat transforms.
"""

from __future__ import annotations

import torch

from torchlite.data.datasets import sampling
from torchlite.ops.affine import affine3d
from torchlite.ops.random_affine import AffineDraw, RandomAffine3d


class BatchAugment3d:
    """``augment(crops)``: (N, C, D, H, W) crops, floating point or int16 HU
    (what ``augment="batch"`` datasets hand out) -> augmented, same device
    and shape, float32 for int16 (else the crops' dtype), one ``affine3d``
    call with a theta per sample."""

    def __init__(self, augmentation: RandomAffine3d | None = None, *, seed: int = 0):
        self.augmentation = augmentation if augmentation is not None else RandomAffine3d()
        self.seed = sampling.check_int("seed", seed)
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Restart the draws at epoch ``epoch``'s stream."""
        self.epoch = sampling.check_int("epoch", epoch)
        self._generator = sampling.generator(self.seed, self.epoch, sampling.BATCH_AUGMENT)

    def draw(self, n: int) -> AffineDraw:
        """The next ``n`` per-sample transforms (and one noise seed)."""
        return self.augmentation.draw(n, self._generator)

    def apply(self, crops: torch.Tensor, draw: AffineDraw) -> torch.Tensor:
        """Resample ``crops`` through ``draw``'s thetas and add its noise."""
        if crops.dim() != 5:
            raise ValueError(f"BatchAugment3d: crops must be (N, C, D, H, W), got shape {tuple(crops.shape)}")
        if draw.theta.shape[0] != crops.shape[0]:
            raise ValueError(
                f"BatchAugment3d: {draw.theta.shape[0]} thetas for a batch of {crops.shape[0]} crops"
            )
        if crops.dtype == torch.int16:
            crops = crops.float()
        theta = draw.theta.to(device=crops.device)
        return affine3d(
            crops, theta, padding=self.augmentation.padding, noise_std=draw.noise_std, seed=draw.seed
        )

    def __call__(self, crops: torch.Tensor) -> torch.Tensor:
        return self.apply(crops, self.draw(crops.shape[0]))

    def __repr__(self) -> str:
        return f"BatchAugment3d({self.augmentation!r}, seed={self.seed}, epoch={self.epoch})"
