"""RGB baselines: ResNet-50 (ImageNet, Keras/Caffe v1 striding), ResNet-20 and ResNet-18 for CIFAR.

Input: x [N, 3, H, W] float32, normalized; forward(x, qt=None) (qt only for QSAM's QABN).
"""

from __future__ import annotations

from torch import nn

from .registry import register_model
from .resnet import NormLayer, ResNet, StageSpec, basic_stage_specs, conv_norm_act

RESNET50_SPECS = (
    StageSpec(3, 256, stride=1, mid_channels=64),
    StageSpec(4, 512, stride=2, mid_channels=128),
    StageSpec(6, 1024, stride=2, mid_channels=256),
    StageSpec(3, 2048, stride=2, mid_channels=512),
)


def _scaled(specs: tuple[StageSpec, ...], width: float) -> list[StageSpec]:
    return [s.scaled(width) for s in specs]


@register_model(
    "resnet50",
    input_kind="rgb",
    input_size=224,
    description="ResNet-50 v1 (stride in the first 1x1, Keras/Caffe layout), RGB baseline of Gueguen et al.",
)
def resnet50(
    num_classes: int = 1000,
    *,
    input_size: int = 224,
    width: float = 1.0,
    stride_in_1x1: bool = True,
    norm_layer: NormLayer = nn.BatchNorm2d,
    zero_init_residual: bool = False,
) -> ResNet:
    """7x7/2 conv + 3x3/2 max-pool stem, bottleneck stages [3, 4, 6, 3]; `width` scales all channels.

    stride_in_1x1=False gives torchvision's v1.5 (same parameters, ~0.23 GMACs more at 224).
    """
    stem_ch = max(1, round(64 * width))
    stem = nn.Sequential(
        *conv_norm_act(3, stem_ch, 7, stride=2, norm_layer=norm_layer),
        nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
    )
    return ResNet(
        _scaled(RESNET50_SPECS, width),
        in_channels=stem_ch,
        num_classes=num_classes,
        input_size=input_size,
        stem=stem,
        norm_layer=norm_layer,
        stride_in_1x1=stride_in_1x1,
        zero_init_residual=zero_init_residual,
    )


def _cifar_resnet(
    widths: tuple[int, ...],
    depths: tuple[int, ...],
    num_classes: int,
    input_size: int,
    norm_layer: NormLayer,
    zero_init_residual: bool,
) -> ResNet:
    """3x3 stride-1 stem (no max-pool) to widths[0], then `basic_stage_specs(widths, depths)`."""
    return ResNet(
        basic_stage_specs(widths, depths),
        in_channels=widths[0],
        num_classes=num_classes,
        input_size=input_size,
        stem=conv_norm_act(3, widths[0], 3, norm_layer=norm_layer),
        norm_layer=norm_layer,
        zero_init_residual=zero_init_residual,
    )


@register_model(
    "resnet20",
    input_kind="rgb",
    input_size=32,
    description="CIFAR ResNet-20: 3x3 stem, 3 stages of 3 BasicBlocks (16/32/64), projection shortcuts (option B)",
)
def resnet20(
    num_classes: int = 10,
    *,
    input_size: int = 32,
    norm_layer: NormLayer = nn.BatchNorm2d,
    zero_init_residual: bool = False,
) -> ResNet:
    """He et al.'s CIFAR ResNet-20, with 1x1-conv projection shortcuts where the shape changes."""
    return _cifar_resnet((16, 32, 64), (3, 3, 3), num_classes, input_size, norm_layer, zero_init_residual)


@register_model(
    "resnet18_cifar",
    input_kind="rgb",
    input_size=32,
    description="CIFAR ResNet-18 (QSAM's backbone): 3x3 stride-1 stem, no max-pool, BasicBlocks [2, 2, 2, 2]",
)
def resnet18_cifar(
    num_classes: int = 10,
    *,
    input_size: int = 32,
    norm_layer: NormLayer = nn.BatchNorm2d,
    zero_init_residual: bool = False,
) -> ResNet:
    """ResNet-18 with the CIFAR stem used by QSAM (LiMaPKU/QSAM resnet.py layout)."""
    return _cifar_resnet(
        (64, 128, 256, 512), (2, 2, 2, 2), num_classes, input_size, norm_layer, zero_init_residual
    )
