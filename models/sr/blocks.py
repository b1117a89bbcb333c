"""Building blocks of the super-resolution networks: mean shift, residual blocks, pixel-shuffle upsamplers.

Layout follows the EDSR-PyTorch code base that PAMS, DAQ, DDTB and ODM all start from (module names
`head`, `body`, `tail`), with two deliberate differences: the mean shift is a buffer subtraction, not
a frozen 1x1 conv (so quantization never mistakes it for a layer), and images are in [0, 1] (not
[0, 255]), so no `rgb_range` argument exists.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ...common.errors import ModelError

DIV2K_MEAN_RGB = (0.4488, 0.4371, 0.4040)
"""Mean of the DIV2K training images per RGB channel (EDSR-PyTorch's MeanShift), in [0, 1]."""
DIV2K_MEAN_Y = 0.4414
"""BT.601 luma of DIV2K_MEAN_RGB ((65.481 R + 128.553 G + 24.966 B + 16) / 255), for Y-only models."""

SCALES = (2, 3, 4)


def check_scale(scale: int) -> int:
    """`scale` if it is 2, 3 or 4; ModelError otherwise (pixel-shuffle tails exist for these)."""
    if scale not in SCALES:
        raise ModelError(f"scale must be one of {SCALES}, got {scale!r}")
    return scale


def check_channels(channels: int) -> int:
    """3 (RGB) or 1 (the Y channel of YCbCr); ModelError otherwise."""
    if channels not in (1, 3):
        raise ModelError(f"channels must be 3 (RGB) or 1 (Y only), got {channels!r}")
    return channels


def conv3x3(cin: int, cout: int, kernel: int = 3, bias: bool = True) -> nn.Conv2d:
    """A stride-1 'same' conv (odd kernel)."""
    return nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=bias)


class MeanShift(nn.Module):
    """x - mean (sign -1) or x + mean (sign +1) per channel; the mean is a buffer, not a parameter."""

    def __init__(self, channels: int, sign: int) -> None:
        super().__init__()
        mean = DIV2K_MEAN_RGB if channels == 3 else (DIV2K_MEAN_Y,)
        self.register_buffer("mean", sign * torch.tensor(mean).reshape(1, channels, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.mean


class ResBlock(nn.Module):
    """EDSR's residual block: x + res_scale * conv2(relu(conv1(x))), no normalization."""

    def __init__(self, channels: int, res_scale: float = 1.0, kernel: int = 3) -> None:
        super().__init__()
        self.conv1 = conv3x3(channels, channels, kernel)
        self.act = nn.ReLU(inplace=False)
        self.conv2 = conv3x3(channels, channels, kernel)
        self.res_scale = res_scale

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2(self.act(self.conv1(x)))
        if self.res_scale != 1.0:
            out = out * self.res_scale
        return x + out


class BnResBlock(nn.Module):
    """SRResNet's residual block: x + bn2(conv2(prelu(bn1(conv1(x)))))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = conv3x3(channels, channels, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.act = nn.PReLU(channels)
        self.conv2 = conv3x3(channels, channels, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))


def upsampler(scale: int, channels: int, act: str | None = None) -> nn.Sequential:
    """Pixel-shuffle upsampling by `scale`: x2 and x3 in one conv + PixelShuffle, x4 as two x2 stages;
    `act` "prelu" adds SRResNet's PReLU after each shuffle."""
    check_scale(scale)
    layers: list[nn.Module] = []
    for factor in (2, 2) if scale == 4 else (scale,):
        layers += [conv3x3(channels, channels * factor * factor), nn.PixelShuffle(factor)]
        if act == "prelu":
            layers.append(nn.PReLU(channels))
    return nn.Sequential(*layers)
