"""LunaModel: chapter 11's nodule classifier, also chapter 14's malignancy model.

Input (N, 1, 32, 48, 48) HU crops; output (logits, probabilities), both (N, 2).
Parameter names match the book's code, so its checkpoints load as they are.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from torchlite.models.init import init_weights_like_the_book

CROP_SIZE = (32, 48, 48)


class LunaBlock(nn.Module):
    """Two 3x3x3 conv + ReLU, then 2x2x2 max pooling."""

    def __init__(self, in_channels: int, conv_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(in_channels, conv_channels, kernel_size=3, padding=1, bias=True)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv3d(conv_channels, conv_channels, kernel_size=3, padding=1, bias=True)
        self.relu2 = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.conv1(x))
        x = self.relu2(self.conv2(x))
        return self.maxpool(x)


class LunaModel(nn.Module):
    """BatchNorm tail, four LunaBlocks (8/16/32/64 channels), a linear head.

    ``num_classes`` is 2 for nodule / non-nodule and for benign / malignant.
    """

    def __init__(self, in_channels: int = 1, conv_channels: int = 8, num_classes: int = 2) -> None:
        super().__init__()
        self.tail_batchnorm = nn.BatchNorm3d(in_channels)
        self.block1 = LunaBlock(in_channels, conv_channels)
        self.block2 = LunaBlock(conv_channels, conv_channels * 2)
        self.block3 = LunaBlock(conv_channels * 2, conv_channels * 4)
        self.block4 = LunaBlock(conv_channels * 4, conv_channels * 8)
        # Four halvings of 32x48x48 leave 2x3x3 per channel.
        flat = conv_channels * 8 * (CROP_SIZE[0] // 16) * (CROP_SIZE[1] // 16) * (CROP_SIZE[2] // 16)
        self.head_linear = nn.Linear(flat, num_classes)
        self.head_softmax = nn.Softmax(dim=1)
        init_weights_like_the_book(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.tail_batchnorm(x)
        x = self.block4(self.block3(self.block2(self.block1(x))))
        logits = self.head_linear(x.flatten(1))
        return logits, self.head_softmax(logits)
