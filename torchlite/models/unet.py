"""Chapter 13's segmentation network: a 2D U-Net on slices with context.

``UNet`` follows the layout of the U-Net the book vendors (down path of conv
blocks, transposed-conv up path with skip connections, 1x1 last conv), with
the same parameter names so the book's checkpoints load. ``UNetWrapper`` adds
the book's input BatchNorm and output sigmoid; its defaults are the book's:
7 context slices in, 1 class, depth 3, 2**4 filters at the first level,
padded convolutions, batch norm, up-convolutions.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from torchlite.models.init import init_weights_like_the_book


class UNetConvBlock(nn.Module):
    def __init__(self, in_size: int, out_size: int, padding: bool, batch_norm: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_size, out_size, kernel_size=3, padding=int(padding)), nn.ReLU()]
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_size))
        layers += [nn.Conv2d(out_size, out_size, kernel_size=3, padding=int(padding)), nn.ReLU()]
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_size))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class UNetUpBlock(nn.Module):
    def __init__(self, in_size: int, out_size: int, up_mode: str, padding: bool, batch_norm: bool) -> None:
        super().__init__()
        if up_mode == "upconv":
            self.up = nn.ConvTranspose2d(in_size, out_size, kernel_size=2, stride=2)
        elif up_mode == "upsample":
            self.up = nn.Sequential(
                nn.Upsample(mode="bilinear", scale_factor=2), nn.Conv2d(in_size, out_size, kernel_size=1)
            )
        else:
            raise ValueError(f"UNet: `up_mode` must be 'upconv' or 'upsample', got {up_mode!r}")
        self.conv_block = UNetConvBlock(in_size, out_size, padding, batch_norm)

    def forward(self, x: torch.Tensor, bridge: torch.Tensor) -> torch.Tensor:
        up = self.up(x)
        # Unpadded convolutions shrink the skip path less than the up path:
        # center-crop it to match (a no-op with padding=True).
        dy = (bridge.shape[2] - up.shape[2]) // 2
        dx = (bridge.shape[3] - up.shape[3]) // 2
        bridge = bridge[:, :, dy : dy + up.shape[2], dx : dx + up.shape[3]]
        return self.conv_block(torch.cat([up, bridge], 1))


class UNet(nn.Module):
    def __init__(
        self,
        in_channels: int = 1,
        n_classes: int = 2,
        depth: int = 5,
        wf: int = 6,
        padding: bool = False,
        batch_norm: bool = False,
        up_mode: str = "upconv",
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"UNet: `depth` must be >= 1, got {depth}")
        self.padding = padding
        self.depth = depth
        prev = in_channels
        self.down_path = nn.ModuleList()
        for i in range(depth):
            self.down_path.append(UNetConvBlock(prev, 2 ** (wf + i), padding, batch_norm))
            prev = 2 ** (wf + i)
        self.up_path = nn.ModuleList()
        for i in reversed(range(depth - 1)):
            self.up_path.append(UNetUpBlock(prev, 2 ** (wf + i), up_mode, padding, batch_norm))
            prev = 2 ** (wf + i)
        self.last = nn.Conv2d(prev, n_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips: list[torch.Tensor] = []
        last_down = len(self.down_path) - 1
        for i, down in enumerate(self.down_path):
            x = down(x)
            if i != last_down:
                skips.append(x)
                x = F.max_pool2d(x, 2)
        for i, up in enumerate(self.up_path):
            x = up(x, skips[-i - 1])
        return self.last(x)


class UNetWrapper(nn.Module):
    """BatchNorm on the input slices, the U-Net, a sigmoid: per-pixel nodule probability."""

    def __init__(
        self,
        in_channels: int = 7,
        n_classes: int = 1,
        depth: int = 3,
        wf: int = 4,
        padding: bool = True,
        batch_norm: bool = True,
        up_mode: str = "upconv",
    ) -> None:
        super().__init__()
        self.input_batchnorm = nn.BatchNorm2d(in_channels)
        self.unet = UNet(in_channels, n_classes, depth, wf, padding, batch_norm, up_mode)
        self.final = nn.Sigmoid()
        init_weights_like_the_book(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final(self.unet(self.input_batchnorm(x)))
