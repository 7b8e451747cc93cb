"""The book's weight initialization, shared by LunaModel and UNetWrapper."""

from __future__ import annotations

import math

import torch.nn as nn

_INITIALIZED = (nn.Linear, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def init_weights_like_the_book(module: nn.Module) -> None:
    """Kaiming-normal (fan_out, ReLU) weights; biases as the book draws them.

    The book calls ``nn.init.normal_(bias, -bound, bound)`` with
    bound = 1/sqrt(fan_out): a normal with *mean* -bound and *std* bound (it
    reads like a uniform range, but normal_ takes mean and std). Kept as is so
    training matches the book's; the effect is a small negative bias.
    """
    for m in module.modules():
        if isinstance(m, _INITIALIZED):
            nn.init.kaiming_normal_(m.weight.data, a=0, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                _, fan_out = nn.init._calculate_fan_in_and_fan_out(m.weight.data)
                bound = 1 / math.sqrt(fan_out)
                nn.init.normal_(m.bias, -bound, bound)
