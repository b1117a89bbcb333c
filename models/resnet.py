"""The one ResNet: residual blocks, a stage builder, the network class (its DCT-input form,
`DctResNet`, is in dct_resnet.py).

Every architecture in dctq (RGB baselines, the seven Gueguen et al. DCT ResNet-50 variants, the
CIFAR-scale DCT nets) is a `StageSpec` list passed to `ResNet` or `DctResNet`; registered builder
functions only choose the specs.

Conventions, fixed here once:
- Bottlenecks follow the Keras/Caffe ResNet v1 layout by default: a down-sampling block strides in
  its first 1x1 conv and in its 1x1 projection shortcut (`stride_in_1x1=False` gives torchvision's
  v1.5, stride in the middle conv).
- A block projects its shortcut (1x1 conv + norm, "option B") whenever channels or stride change.
- Convs have no bias (a norm follows each); every norm layer is built by the `norm_layer` callable,
  so a model can be rebuilt with another norm (QSAM's QABN).
- An even middle kernel (the RFA block's k=2) pads one row/column after the data only (TensorFlow
  "same" convention) so the spatial size is kept.
- Activations are separate, non-inplace ReLU modules so observers and hooks see unmodified outputs;
  the residual sum is a module (`ResidualAdd`) so quantizers can wrap its inputs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..common.errors import ModelError

NormLayer = Callable[[int], nn.Module]


@dataclasses.dataclass(frozen=True)
class StageSpec:
    """One stage: `blocks` residual blocks, the first one carrying `stride` and any projection.

    block: "bottleneck" (1x1 -> kxk -> 1x1, width `mid_channels`) or "basic" (3x3 -> 3x3).
    kernels: middle kernel of each bottleneck block (RFA stages use (1, 2, 3)); default all 3.
    project_first: the first block always has a 1x1 projection shortcut, as Keras's conv_block (the "a"
        block of every ResNet-50 stage) has even where the shape does not change; otherwise a block
        projects only where its input and output shapes differ.
    """

    blocks: int
    out_channels: int
    stride: int = 1
    block: str = "bottleneck"
    mid_channels: int | None = None
    kernels: tuple[int, ...] | None = None
    project_first: bool = False

    def __post_init__(self) -> None:
        if self.block not in ("bottleneck", "basic"):
            raise ModelError(f"StageSpec.block must be 'bottleneck' or 'basic', got {self.block!r}")
        if self.blocks < 1 or self.out_channels < 1 or self.stride < 1:
            raise ModelError(f"StageSpec needs blocks, out_channels and stride >= 1, got {self}")
        if self.block == "bottleneck" and (self.mid_channels is None or self.mid_channels < 1):
            raise ModelError(f"a bottleneck StageSpec needs mid_channels >= 1, got {self}")
        if self.kernels is not None:
            if self.block != "bottleneck":
                raise ModelError("StageSpec.kernels applies to bottleneck stages only")
            if len(self.kernels) != self.blocks or min(self.kernels) < 1:
                raise ModelError(f"StageSpec.kernels needs one kernel >= 1 per block, got {self}")

    def scaled(self, width: float) -> StageSpec:
        """The same stage with every channel count multiplied by `width` (at least 1 channel)."""
        mid = None if self.mid_channels is None else max(1, round(self.mid_channels * width))
        return dataclasses.replace(
            self, out_channels=max(1, round(self.out_channels * width)), mid_channels=mid
        )


class ResidualAdd(nn.Module):
    """`x + shortcut`, as a module so quantizers can observe or wrap both inputs of the Add."""

    def forward(self, x: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
        return x + shortcut


def _pad_for(kernel: int) -> tuple[nn.Module, int]:
    """(explicit pad module, conv padding) keeping the spatial size for a stride-1 kxk conv."""
    if kernel % 2 == 1:
        return nn.Identity(), kernel // 2
    total = kernel - 1
    # TensorFlow "same": the extra row/column goes after the data (right, bottom).
    return nn.ZeroPad2d((total // 2, total - total // 2, total // 2, total - total // 2)), 0


def _shortcut(
    in_ch: int, out_ch: int, stride: int, norm_layer: NormLayer, *, project: bool = False
) -> nn.Module | None:
    if in_ch == out_ch and stride == 1 and not project:
        return None
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False),
        norm_layer(out_ch),
    )


class Bottleneck(nn.Module):
    """1x1 (mid) -> kxk (mid) -> 1x1 (out) with a residual; stride on the first 1x1 (v1) or the kxk."""

    def __init__(
        self,
        in_channels: int,
        mid_channels: int,
        out_channels: int,
        *,
        stride: int = 1,
        kernel_size: int = 3,
        stride_in_1x1: bool = True,
        norm_layer: NormLayer = nn.BatchNorm2d,
        project: bool = False,
    ) -> None:
        super().__init__()
        if kernel_size % 2 == 0 and not stride_in_1x1 and stride > 1:
            raise ModelError("an even middle kernel cannot carry the stride (use stride_in_1x1=True)")
        s1, s2 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = nn.Conv2d(in_channels, mid_channels, kernel_size=1, stride=s1, bias=False)
        self.bn1 = norm_layer(mid_channels)
        self.act1 = nn.ReLU()
        self.pad2, padding = _pad_for(kernel_size)
        self.conv2 = nn.Conv2d(
            mid_channels, mid_channels, kernel_size, stride=s2, padding=padding, bias=False
        )
        self.bn2 = norm_layer(mid_channels)
        self.act2 = nn.ReLU()
        self.conv3 = nn.Conv2d(mid_channels, out_channels, kernel_size=1, bias=False)
        self.bn3 = norm_layer(out_channels)
        self.downsample = _shortcut(in_channels, out_channels, stride, norm_layer, project=project)
        self.add = ResidualAdd()
        self.act3 = nn.ReLU()

    def last_norm(self) -> nn.Module:
        return self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.act2(self.bn2(self.conv2(self.pad2(out))))
        out = self.bn3(self.conv3(out))
        return self.act3(self.add(out, shortcut))


class BasicBlock(nn.Module):
    """3x3 -> 3x3 with a residual (ResNet-18/20 block); stride on the first 3x3."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int = 1,
        norm_layer: NormLayer = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = norm_layer(out_channels)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = norm_layer(out_channels)
        self.downsample = _shortcut(in_channels, out_channels, stride, norm_layer)
        self.add = ResidualAdd()
        self.act2 = nn.ReLU()

    def last_norm(self) -> nn.Module:
        return self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(self.add(out, shortcut))


def basic_stage_specs(widths: Sequence[int], depths: Sequence[int]) -> list[StageSpec]:
    """CIFAR-style BasicBlock stages: one per width, the first at stride 1, every later one stride 2.

    Raises ModelError unless widths and depths are equally long lists of positive integers.
    """
    widths, depths = tuple(int(w) for w in widths), tuple(int(d) for d in depths)
    if not widths or len(widths) != len(depths) or min(widths + depths) < 1:
        raise ModelError(
            f"widths and depths must be equally long lists of positive integers, got {widths}, {depths}"
        )
    return [
        StageSpec(d, w, stride=1 if i == 0 else 2, block="basic")
        for i, (w, d) in enumerate(zip(widths, depths, strict=True))
    ]


def make_stage(
    in_channels: int, spec: StageSpec, *, norm_layer: NormLayer = nn.BatchNorm2d, stride_in_1x1: bool = True
) -> nn.Sequential:
    """The blocks of one stage as an nn.Sequential (its output has `spec.out_channels` channels)."""
    blocks: list[nn.Module] = []
    ch = in_channels
    for i in range(spec.blocks):
        stride = spec.stride if i == 0 else 1
        if spec.block == "basic":
            blocks.append(BasicBlock(ch, spec.out_channels, stride=stride, norm_layer=norm_layer))
        else:
            kernel = 3 if spec.kernels is None else spec.kernels[i]
            blocks.append(
                Bottleneck(
                    ch,
                    spec.mid_channels or 1,
                    spec.out_channels,
                    stride=stride,
                    kernel_size=kernel,
                    stride_in_1x1=stride_in_1x1,
                    norm_layer=norm_layer,
                    project=spec.project_first and i == 0,
                )
            )
        ch = spec.out_channels
    return nn.Sequential(*blocks)


def make_stages(
    in_channels: int,
    specs: Sequence[StageSpec],
    *,
    norm_layer: NormLayer = nn.BatchNorm2d,
    stride_in_1x1: bool = True,
) -> tuple[nn.Sequential, int]:
    """(nn.Sequential of stages, output channels); an empty `specs` gives an empty Sequential."""
    stages: list[nn.Module] = []
    ch = in_channels
    for spec in specs:
        stages.append(make_stage(ch, spec, norm_layer=norm_layer, stride_in_1x1=stride_in_1x1))
        ch = spec.out_channels
    return nn.Sequential(*stages), ch


def conv_norm_act(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    *,
    stride: int = 1,
    norm_layer: NormLayer = nn.BatchNorm2d,
) -> nn.Sequential:
    """Conv (odd kernel, "same" padding, no bias) -> norm -> ReLU: the RGB stems."""
    return nn.Sequential(
        nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False
        ),
        norm_layer(out_channels),
        nn.ReLU(),
    )


def init_weights(model: nn.Module, *, zero_init_residual: bool = False) -> None:
    """Kaiming-normal (fan_out) convs, unit/zero norms; optionally zero each block's last norm scale."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.GroupNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    if zero_init_residual:
        for m in model.modules():
            if isinstance(m, Bottleneck | BasicBlock):
                norm = m.last_norm()
                if getattr(norm, "weight", None) is not None:
                    nn.init.zeros_(norm.weight)


class ResNet(nn.Module):
    """stem -> stages -> global average pool -> linear; the RGB classifier and the DCT nets' body.

    forward(x: [N, C, H, W] float32 normalized, qt: [N, 3, 64] float | None) -> [N, num_classes].
    `qt` is accepted for QSAM's QABN (read by a forward pre-hook) and ignored otherwise; keep it the
    second argument.
    """

    input_kind = "rgb"

    def __init__(
        self,
        specs: Sequence[StageSpec],
        *,
        in_channels: int,
        num_classes: int,
        input_size: int,
        stem: nn.Module | None = None,
        front: nn.Module | None = None,
        norm_layer: NormLayer = nn.BatchNorm2d,
        stride_in_1x1: bool = True,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ModelError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.input_size = input_size
        self.stem = stem if stem is not None else nn.Identity()
        if front is not None:
            self.front = front
        self.stages, self.num_features = make_stages(
            in_channels, specs, norm_layer=norm_layer, stride_in_1x1=stride_in_1x1
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.num_features, num_classes)
        init_weights(self, zero_init_residual=zero_init_residual)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(x), 1))

    def forward(self, x: torch.Tensor, qt: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_head(self.stages(self.stem(x)))
