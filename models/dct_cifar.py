"""CIFAR-scale DCT nets for 32x32 4:2:0 JPEGs: y [N, 64, 4, 4], cbcr [N, 128, 2, 2], qt [N, 3, 64].

The 8x8 DCT already is a stride-8 layer, so these start where ResNet-20's last stage ends and stay
small enough to train on CPU (~0.35-0.41M parameters, ~2-4 MMACs; ResNet-20 has 0.27M, 41 MMACs):

- dct_cifar_upsampling: Cb, Cr nearest x2 -> concat 192 @4x4 -> 3 BasicBlocks 48 @4x4
  (the first projects 192 -> 48) -> 3 BasicBlocks 64 @2x2 -> pool -> fc.
- dct_cifar_late_concat: Y 3 BasicBlocks 48 @4x4 + 1 BasicBlock 48 stride 2; CbCr 1 BasicBlock
  128 -> 16 @2x2; concat 64 @2x2 -> 2 BasicBlocks 64 -> pool -> fc.
- dct_cifar_deconv: Cb, Cr nearest x2, concat 192 @4x4 -> ConvTranspose 4x4 stride 4 (a learned
  block-to-space map, Gueguen's Deconvolution idea) -> 32 @16x16 -> ResNet-20's last two stages
  (3 BasicBlocks 32 @16x16, 3 BasicBlocks 64 @8x8): 0.36M parameters, 29 MMACs. The small nets
  above stop ~13 points short of ResNet-20 on CIFAR-10; this one keeps its spatial resolution.
- dct_cifar_deconv32: the same front with ConvTranspose 8x8 stride 8 to 16 @32x32, then all three
  ResNet-20 stages: ResNet-20 whose pixel stem is a learned map from the coefficients (0.47M
  parameters, 43.5 MMACs vs 40.8), for when accuracy matters more than the 8x8 grid's savings.

Shortcuts are 1x1 projections (option B) wherever the shape changes; `widths`/`depths` resize them.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ..common.errors import ModelError
from .dct_resnet import DctFront, DctResNet
from .registry import register_model
from .resnet import NormLayer, StageSpec, basic_stage_specs


def _pair(values: Sequence[int], name: str) -> tuple[int, int]:
    values = tuple(int(v) for v in values)
    if len(values) != 2 or min(values) < 1:
        raise ModelError(f"{name} must be two positive integers, got {values}")
    return values  # type: ignore[return-value]


def _merged_net(
    widths: Sequence[int],
    depths: Sequence[int],
    upscale: int,
    num_classes: int,
    input_size: int,
    norm_layer: NormLayer,
    zero_init_residual: bool,
) -> DctResNet:
    """Cb, Cr nearest x2 and concatenated with Y; with `upscale` > 1 a ConvTranspose block-to-space
    map to `widths[0]` channels; then `basic_stage_specs(widths, depths)`."""
    specs = basic_stage_specs(widths, depths)
    front = DctFront(
        chroma="nearest",
        upscale=upscale,
        upscale_channels=specs[0].out_channels if upscale > 1 else None,
        norm_layer=norm_layer,
    )
    return DctResNet(
        front,
        specs,
        num_classes=num_classes,
        input_size=input_size,
        norm_layer=norm_layer,
        zero_init_residual=zero_init_residual,
    )


@register_model(
    "dct_cifar_upsampling",
    input_kind="dct",
    input_size=32,
    description="CIFAR DCT net: chroma nearest x2, concat 192 @4x4, BasicBlocks 3x48 @4x4 + 3x64 @2x2 (~0.41M)",
)
def dct_cifar_upsampling(
    num_classes: int = 10,
    *,
    input_size: int = 32,
    widths: Sequence[int] = (48, 64),
    depths: Sequence[int] = (3, 3),
    norm_layer: NormLayer = nn.BatchNorm2d,
    zero_init_residual: bool = False,
) -> DctResNet:
    widths, depths = _pair(widths, "widths"), _pair(depths, "depths")
    return _merged_net(widths, depths, 1, num_classes, input_size, norm_layer, zero_init_residual)


@register_model(
    "dct_cifar_deconv",
    input_kind="dct",
    input_size=32,
    description="CIFAR DCT net: concat 192 @4x4, ConvTranspose x4 -> 32 @16x16, BasicBlocks 3x32 @16 + 3x64 @8 (~0.36M)",
)
def dct_cifar_deconv(
    num_classes: int = 10,
    *,
    input_size: int = 32,
    widths: Sequence[int] = (32, 64),
    depths: Sequence[int] = (3, 3),
    upscale: int = 4,
    norm_layer: NormLayer = nn.BatchNorm2d,
    zero_init_residual: bool = False,
) -> DctResNet:
    return _merged_net(widths, depths, upscale, num_classes, input_size, norm_layer, zero_init_residual)


@register_model(
    "dct_cifar_deconv32",
    input_kind="dct",
    input_size=32,
    description="CIFAR DCT net: concat 192 @4x4, ConvTranspose x8 -> 16 @32x32, ResNet-20's three stages (~0.47M)",
)
def dct_cifar_deconv32(
    num_classes: int = 10,
    *,
    input_size: int = 32,
    widths: Sequence[int] = (16, 32, 64),
    depths: Sequence[int] = (3, 3, 3),
    upscale: int = 8,
    norm_layer: NormLayer = nn.BatchNorm2d,
    zero_init_residual: bool = False,
) -> DctResNet:
    """ResNet-20 with its 3x3 pixel stem replaced by a learned inverse-DCT-like map to the full grid."""
    return _merged_net(widths, depths, upscale, num_classes, input_size, norm_layer, zero_init_residual)


@register_model(
    "dct_cifar_late_concat",
    input_kind="dct",
    input_size=32,
    description="CIFAR DCT net: Y BasicBlocks 3x48 @4x4 + 48/2, CbCr 16 @2x2, concat 64, 2x64 (~0.35M)",
)
def dct_cifar_late_concat(
    num_classes: int = 10,
    *,
    input_size: int = 32,
    widths: Sequence[int] = (48, 64),
    depths: Sequence[int] = (3, 2),
    norm_layer: NormLayer = nn.BatchNorm2d,
    zero_init_residual: bool = False,
) -> DctResNet:
    """widths = (luma width, merged width); the chroma path gets merged - luma channels."""
    w_y, w_merged = _pair(widths, "widths")
    d_y, d_merged = _pair(depths, "depths")
    if w_merged <= w_y:
        raise ModelError(f"widths: the merged width ({w_merged}) must exceed the luma width ({w_y})")
    front = DctFront(
        chroma="none",
        y_specs=[StageSpec(d_y, w_y, stride=1, block="basic"), StageSpec(1, w_y, stride=2, block="basic")],
        cbcr_specs=[StageSpec(1, w_merged - w_y, stride=1, block="basic")],
        norm_layer=norm_layer,
    )
    return DctResNet(
        front,
        [StageSpec(d_merged, w_merged, stride=1, block="basic")],
        num_classes=num_classes,
        input_size=input_size,
        norm_layer=norm_layer,
        zero_init_residual=zero_init_residual,
    )
