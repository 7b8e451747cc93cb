"""Random augmentation parameters, drawn in Python and applied by the operators.

The operators are deterministic functions; all randomness lives here, drawn
from a ``torch.Generator`` so a seeded run is reproducible. The knobs and
defaults are the book's (chapter 12 for 3D candidate crops, chapter 13 for 2D
segmentation slices), with two of its bugs fixed:

- the book writes the random offset into the bottom row of the 4x4 (3x3)
  matrix, ``transform_t[3, i]``, which ``transform_t[:3]`` then drops, so its
  offset augmentation never happens. Here the offset is the translation
  column of theta, as intended;
- chapter 13 draws one transform for the whole batch; here every sample gets
  its own.

Thetas follow ``F.affine_grid`` (normalized coordinates, align_corners=False,
column order x, y[, z] = W, H[, D]). Rotation is about the index (slice) axis,
i.e. in the W-H plane, as in the book: CT slices are often thicker than the
in-plane pixels, so rotating across slices would resample badly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class AffineDraw:
    """One batch's worth of drawn parameters."""

    theta: torch.Tensor  # (N, 3, 4) or (N, 2, 3), float32, affine_grid convention
    noise_std: float
    seed: int  # seeds the operators' counter-based noise


def _uniforms(n: int, widths: list[int], generator: torch.Generator | None) -> list[np.ndarray]:
    """Blocks of (n, width) uniforms in [0, 1), float64, from one torch call.

    Drawn on the CPU so that a seeded generator yields the same numbers
    whatever device the augmentation later runs on. One call for every knob
    (not one per knob) because a Dataset draws one sample at a time, where
    each torch call costs more than its arithmetic; torch's CPU generator
    fills a tensor in order, so the blocks are the numbers consecutive
    per-knob calls would give.
    """
    flat = torch.rand(n * sum(widths), generator=generator, dtype=torch.float64).numpy()
    blocks, at = [], 0
    for w in widths:
        blocks.append(flat[at : at + n * w].reshape(n, w))
        at += n * w
    return blocks


def _draw_linear(
    n: int,
    dims: int,
    *,
    flip: bool,
    offset: float,
    scale: float,
    rotate: bool,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """(n, dims, dims+1) float64 thetas: diag(flip * scale) @ rotation, + offset.

    The draws come from ``generator`` (torch), in the order flip, scale,
    angle, offset (a knob that is off draws nothing); the arithmetic on them
    is numpy, since a dozen torch calls on 3x4 tensors cost more than the
    crop they parameterize.
    """
    u_flip, u_scale, u_angle, u_offset = _uniforms(
        n, [dims if flip else 0, dims if scale else 0, 1 if rotate else 0, dims if offset else 0], generator
    )
    diag = np.ones((n, dims))
    if flip:
        diag[u_flip > 0.5] = -1.0
    if scale:
        diag *= 1.0 + scale * (u_scale * 2 - 1)
    # theta[:, :, :dims] = diag(d) @ rot (the book's transform_t @= rotation_t),
    # written element-wise: rot is the identity but for its x-y block.
    theta = np.zeros((n, dims, dims + 1))
    axes = np.arange(dims)
    theta[:, axes, axes] = diag
    if rotate:
        angle = u_angle[:, 0] * (2 * math.pi)
        c, s = np.cos(angle), np.sin(angle)
        # Columns 0 and 1 are x (W) and y (H): a rotation in the slice plane.
        theta[:, 0, 0], theta[:, 0, 1] = diag[:, 0] * c, -diag[:, 0] * s
        theta[:, 1, 0], theta[:, 1, 1] = diag[:, 1] * s, diag[:, 1] * c
    if offset:
        theta[:, :, dims] = offset * (u_offset * 2 - 1)
    return torch.from_numpy(theta)


def _draw_seed(generator: torch.Generator | None) -> int:
    return int(torch.randint(0, 2**62, (1,), generator=generator).item())


class RandomAffine3d:
    """Chapter 12's candidate augmentation for (N, C, D, H, W) crops.

    Defaults are the book's: flip each axis with p=0.5, offset up to ±0.1 of
    the half-extent (normalized units), scale each axis by 1 ± 0.2, a uniform
    rotation about the index axis, and Gaussian noise of 25 HU. Set a knob to
    False/0 to switch it off.
    """

    def __init__(
        self,
        *,
        flip: bool = True,
        offset: float = 0.1,
        scale: float = 0.2,
        rotate: bool = True,
        noise: float = 25.0,
        padding: str = "border",
    ) -> None:
        for name, value in (("offset", offset), ("scale", scale), ("noise", noise)):
            if value < 0:
                raise ValueError(f"RandomAffine3d: `{name}` must be >= 0, got {value}")
        self.flip, self.offset, self.scale, self.rotate = bool(flip), float(offset), float(scale), bool(rotate)
        self.noise, self.padding = float(noise), padding

    def draw(self, n: int, generator: torch.Generator | None = None) -> AffineDraw:
        theta = _draw_linear(
            n, 3, flip=self.flip, offset=self.offset, scale=self.scale, rotate=self.rotate, generator=generator
        )
        return AffineDraw(theta.to(torch.float32), self.noise, _draw_seed(generator))

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment a batch (N, C, D, H, W) in one operator call."""
        from torchlite.ops.affine import affine3d

        if x.dim() != 5:
            raise ValueError(f"RandomAffine3d: input must be (N, C, D, H, W), got shape {tuple(x.shape)}")
        d = self.draw(x.shape[0], generator)
        return affine3d(x, d.theta.to(x.device), padding=self.padding, noise_std=d.noise_std, seed=d.seed)

    def __repr__(self) -> str:
        return (
            f"RandomAffine3d(flip={self.flip}, offset={self.offset}, scale={self.scale}, "
            f"rotate={self.rotate}, noise={self.noise}, padding={self.padding!r})"
        )


class RandomAffine2d:
    """Chapter 13's segmentation augmentation for (N, C, H, W) slices with context.

    Defaults are the book's: flip, offset 0.03, scale 0.2, rotation, noise 25.
    The label mask gets the same geometry (no noise) and is re-binarized at 0.5,
    as the book does.
    """

    def __init__(
        self,
        *,
        flip: bool = True,
        offset: float = 0.03,
        scale: float = 0.2,
        rotate: bool = True,
        noise: float = 25.0,
        padding: str = "border",
    ) -> None:
        for name, value in (("offset", offset), ("scale", scale), ("noise", noise)):
            if value < 0:
                raise ValueError(f"RandomAffine2d: `{name}` must be >= 0, got {value}")
        self.flip, self.offset, self.scale, self.rotate = bool(flip), float(offset), float(scale), bool(rotate)
        self.noise, self.padding = float(noise), padding

    def draw(self, n: int, generator: torch.Generator | None = None) -> AffineDraw:
        theta = _draw_linear(
            n, 2, flip=self.flip, offset=self.offset, scale=self.scale, rotate=self.rotate, generator=generator
        )
        return AffineDraw(theta.to(torch.float32), self.noise, _draw_seed(generator))

    def __call__(
        self, x: torch.Tensor, label: torch.Tensor | None = None, generator: torch.Generator | None = None
    ):
        """Augment (N, C, H, W) inputs, and optionally their (N, 1, H, W) masks."""
        from torchlite.ops.affine import affine2d

        if x.dim() != 4:
            raise ValueError(f"RandomAffine2d: input must be (N, C, H, W), got shape {tuple(x.shape)}")
        d = self.draw(x.shape[0], generator)
        theta = d.theta.to(x.device)
        out = affine2d(x, theta, padding=self.padding, noise_std=d.noise_std, seed=d.seed)
        if label is None:
            return out
        if label.shape[0] != x.shape[0] or label.shape[2:] != x.shape[2:]:
            raise ValueError(
                f"RandomAffine2d: `label` shape {tuple(label.shape)} does not match input {tuple(x.shape)}"
            )
        warped = affine2d(label.to(torch.float32), theta, padding=self.padding)
        return out, warped > 0.5

    def __repr__(self) -> str:
        return (
            f"RandomAffine2d(flip={self.flip}, offset={self.offset}, scale={self.scale}, "
            f"rotate={self.rotate}, noise={self.noise}, padding={self.padding!r})"
        )
