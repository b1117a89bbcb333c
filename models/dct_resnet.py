"""The DCT-input ResNet: `DctFront` merges the dequantized luma and chroma coefficient streams into
one feature map, and `DctResNet` runs DctStem -> DctFront -> the stages and head of `resnet.ResNet`,
whose conventions (resnet.py) hold here too.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..common.errors import ModelError
from .resnet import NormLayer, ResNet, StageSpec, make_stages
from .stem import DctStem


class DctFront(nn.Module):
    """Merges the dequantized, normalized luma and chroma streams into one feature map.

    chroma: "nearest" (Cb/Cr upsampled x2 to the luma grid), "deconv" (one 2x2 stride-2
    ConvTranspose per chroma plane, 64 -> 64) or "none" (stay on the chroma grid: then the luma
    path must reach it, through `y_downsample` or a stride-2 stage in `y_specs`).
    y_downsample: channels of a 2x2 stride-2 conv (+ norm) on luma (Gueguen's DownSampling).
    y_specs / cbcr_specs: residual stages run on each stream before the concatenation (Late-Concat).
    upscale / upscale_channels: a learned block-to-space map on the merged features, a ConvTranspose
    with kernel = stride = `upscale` (+ norm, ReLU): every block's coefficients become an
    upscale x upscale patch of `upscale_channels` features, like a learned, truncated inverse DCT.
    The CIFAR nets need it: the 8x8 DCT alone leaves a 4x4 grid, too coarse for a ResNet body.
    Output: concat([luma features, chroma features]) with `out_channels` channels, or the
    upscaled map with `upscale_channels`.
    """

    def __init__(
        self,
        *,
        chroma: str = "nearest",
        y_downsample: int | None = None,
        y_specs: Sequence[StageSpec] = (),
        cbcr_specs: Sequence[StageSpec] = (),
        norm_layer: NormLayer = nn.BatchNorm2d,
        stride_in_1x1: bool = True,
        upscale: int = 1,
        upscale_channels: int | None = None,
    ) -> None:
        super().__init__()
        if upscale < 1 or (upscale > 1 and (upscale_channels is None or upscale_channels < 1)):
            raise ModelError(
                f"DctFront upscale must be >= 1, and > 1 needs upscale_channels >= 1; "
                f"got upscale={upscale}, upscale_channels={upscale_channels}"
            )
        if chroma not in ("nearest", "deconv", "none"):
            raise ModelError(f"DctFront chroma must be 'nearest', 'deconv' or 'none', got {chroma!r}")
        # Both streams must end on the same grid (strides counted from the luma block grid).
        y_stride = (2 if y_downsample else 1) * _total_stride(y_specs)
        c_stride = (2 if chroma == "none" else 1) * _total_stride(cbcr_specs)
        if y_stride != c_stride:
            raise ModelError(
                f"DctFront streams do not meet: luma ends at stride {y_stride}, chroma at stride {c_stride} "
                f"(chroma={chroma!r}); adjust y_downsample or the stage strides"
            )
        self.chroma = chroma
        y_ch = 64
        if y_downsample:
            self.y_down: nn.Module = nn.Sequential(
                nn.Conv2d(64, y_downsample, kernel_size=2, stride=2, bias=False), norm_layer(y_downsample)
            )
            y_ch = y_downsample
        else:
            self.y_down = nn.Identity()
        self.y_stages, y_ch = make_stages(y_ch, y_specs, norm_layer=norm_layer, stride_in_1x1=stride_in_1x1)
        if chroma == "deconv":
            self.deconv_cb = nn.ConvTranspose2d(64, 64, kernel_size=2, stride=2)
            self.deconv_cr = nn.ConvTranspose2d(64, 64, kernel_size=2, stride=2)
        self.cbcr_stages, c_ch = make_stages(
            128, cbcr_specs, norm_layer=norm_layer, stride_in_1x1=stride_in_1x1
        )
        self.out_channels = y_ch + c_ch
        self.upscale: nn.Module = nn.Identity()
        if upscale > 1:
            assert upscale_channels is not None
            self.upscale = nn.Sequential(
                nn.ConvTranspose2d(
                    self.out_channels, upscale_channels, kernel_size=upscale, stride=upscale, bias=False
                ),
                norm_layer(upscale_channels),
                nn.ReLU(),
            )
            self.out_channels = upscale_channels

    def forward(self, y: torch.Tensor, cbcr: torch.Tensor) -> torch.Tensor:
        if self.chroma == "nearest":
            cbcr = F.interpolate(cbcr, scale_factor=2.0, mode="nearest")
        elif self.chroma == "deconv":
            cbcr = torch.cat([self.deconv_cb(cbcr[:, :64]), self.deconv_cr(cbcr[:, 64:])], dim=1)
        y = self.y_stages(self.y_down(y))
        cbcr = self.cbcr_stages(cbcr)
        return self.upscale(torch.cat([y, cbcr], dim=1))


def _total_stride(specs: Sequence[StageSpec]) -> int:
    stride = 1
    for spec in specs:
        stride *= spec.stride
    return stride


class DctResNet(ResNet):
    """DctStem (dequantize + normalize) -> DctFront (merge streams) -> ResNet stages -> head.

    forward(y: [N, 64, Hb, Wb], cbcr: [N, 128, Hb/2, Wb/2], qt: [N, 3, 64]) -> [N, num_classes];
    inputs are float tensors holding the quantized integer coefficients (k = 8u + v). Keep the
    argument order: QABN reads `qt` from the third positional argument.
    """

    input_kind = "dct"

    def __init__(
        self,
        front: DctFront,
        specs: Sequence[StageSpec],
        *,
        num_classes: int,
        input_size: int,
        norm_layer: NormLayer = nn.BatchNorm2d,
        stride_in_1x1: bool = True,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__(
            specs,
            in_channels=front.out_channels,
            num_classes=num_classes,
            input_size=input_size,
            stem=DctStem(),
            front=front,
            norm_layer=norm_layer,
            stride_in_1x1=stride_in_1x1,
            zero_init_residual=zero_init_residual,
        )

    def forward(self, y: torch.Tensor, cbcr: torch.Tensor, qt: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        y, cbcr = self.stem(y, cbcr, qt)
        return self.forward_head(self.stages(self.front(y, cbcr)))
