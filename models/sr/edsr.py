"""EDSR (Lim et al. 2017) and SRResNet (Ledig et al. 2017): the networks ODM, PAMS and DDTB quantize.

Input x: [N, C, H, W] float32 in [0, 1] (C = 3 RGB, or 1 for the Y channel), any H and W (fully
convolutional); output [N, C, scale*H, scale*W], not clamped (evaluation rounds it to 8 bits).

    head: conv3x3 C -> F                         (kept in full precision by the SR recipes)
    body: n_blocks residual blocks, then conv3x3 F -> F (`body_end`), plus the global skip
    tail: pixel-shuffle upsampler, conv3x3 F -> C   (kept in full precision)

EDSR-baseline: 16 blocks of 64 channels, res_scale 1 (1.37M parameters at x4). The CPU-scale EDSR of
METHODS.md is 8 blocks of 32 channels (0.24M at x4). SRResNet: 9x9 head and tail convs, 16 BN
residual blocks with PReLU, a BN after `body_end`, PReLU upsamplers.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..registry import register_model
from .blocks import BnResBlock, MeanShift, ResBlock, check_channels, check_scale, conv3x3, upsampler

LR_SIZE = 64
"""LR input side (pixels) at which the registry states parameters and GMACs (`dctq models`)."""


class SuperResolution(nn.Module):
    """head -> body (+ global skip) -> tail between mean shifts; see the module docstring.

    Attributes every dctq SR model carries: task "sr", input_kind "rgb" (pixels, also for Y-only),
    image_channels, scale, input_size (the LR side the cost is stated at); num_classes is None.
    """

    task = "sr"
    input_kind = "rgb"
    num_classes = None

    def __init__(
        self,
        head: nn.Module,
        body: nn.Sequential,
        body_end: nn.Module,
        tail: nn.Sequential,
        *,
        scale: int,
        channels: int,
        input_size: int = LR_SIZE,
    ) -> None:
        super().__init__()
        self.scale = check_scale(scale)
        self.image_channels = check_channels(channels)
        self.input_size = input_size
        self.sub_mean = MeanShift(channels, -1)
        self.head = head
        self.body = body
        self.body_end = body_end
        self.tail = tail
        self.add_mean = MeanShift(channels, +1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.head(self.sub_mean(x))
        x = x + self.body_end(self.body(x))
        return self.add_mean(self.tail(x))


def edsr(
    scale: int = 4,
    *,
    n_blocks: int = 16,
    n_feats: int = 64,
    res_scale: float = 1.0,
    channels: int = 3,
    input_size: int = LR_SIZE,
) -> SuperResolution:
    """EDSR: `n_blocks` ResBlocks of `n_feats` channels (the paper's full model: 32, 256, res_scale 0.1)."""
    check_channels(channels)
    return SuperResolution(
        conv3x3(channels, n_feats),
        nn.Sequential(*(ResBlock(n_feats, res_scale) for _ in range(n_blocks))),
        conv3x3(n_feats, n_feats),
        nn.Sequential(upsampler(scale, n_feats), conv3x3(n_feats, channels)),
        scale=scale,
        channels=channels,
        input_size=input_size,
    )


def _edsr_info(what: str, scale: int, n_blocks: int, n_feats: int) -> dict:
    return {
        "input_kind": "rgb",
        "input_size": LR_SIZE,
        "task": "sr",
        "description": f"{what} x{scale}: {n_blocks} residual blocks, {n_feats} channels, pixel-shuffle tail "
        f"(LR input; cost at {LR_SIZE}x{LR_SIZE})",
    }


_BASELINE = {"n_blocks": 16, "n_feats": 64}
_CPU = {"n_blocks": 8, "n_feats": 32}


@register_model("edsr_baseline_x2", **_edsr_info("EDSR-baseline", 2, **_BASELINE))
def edsr_baseline_x2(*, channels: int = 3, input_size: int = LR_SIZE) -> SuperResolution:
    """EDSR-baseline x2 (16 blocks, 64 channels; channels=1: Y only)."""
    return edsr(2, **_BASELINE, channels=channels, input_size=input_size)


@register_model("edsr_baseline_x3", **_edsr_info("EDSR-baseline", 3, **_BASELINE))
def edsr_baseline_x3(*, channels: int = 3, input_size: int = LR_SIZE) -> SuperResolution:
    """EDSR-baseline x3 (16 blocks, 64 channels; channels=1: Y only)."""
    return edsr(3, **_BASELINE, channels=channels, input_size=input_size)


@register_model("edsr_baseline_x4", **_edsr_info("EDSR-baseline", 4, **_BASELINE))
def edsr_baseline_x4(*, channels: int = 3, input_size: int = LR_SIZE) -> SuperResolution:
    """EDSR-baseline x4 (16 blocks, 64 channels; channels=1: Y only): the model of ODM/PAMS/DDTB's tables."""
    return edsr(4, **_BASELINE, channels=channels, input_size=input_size)


@register_model("edsr_cpu_x2", **_edsr_info("CPU-scale EDSR", 2, **_CPU))
def edsr_cpu_x2(*, channels: int = 3, input_size: int = LR_SIZE) -> SuperResolution:
    """METHODS.md's CPU-scale EDSR at x2 (8 blocks, 32 channels)."""
    return edsr(2, **_CPU, channels=channels, input_size=input_size)


@register_model("edsr_cpu_x3", **_edsr_info("CPU-scale EDSR", 3, **_CPU))
def edsr_cpu_x3(*, channels: int = 3, input_size: int = LR_SIZE) -> SuperResolution:
    """METHODS.md's CPU-scale EDSR at x3 (8 blocks, 32 channels)."""
    return edsr(3, **_CPU, channels=channels, input_size=input_size)


@register_model("edsr_cpu_x4", **_edsr_info("CPU-scale EDSR", 4, **_CPU))
def edsr_cpu_x4(*, channels: int = 3, input_size: int = LR_SIZE) -> SuperResolution:
    """METHODS.md's CPU-scale EDSR at x4 (8 blocks, 32 channels): the model of the measured tables."""
    return edsr(4, **_CPU, channels=channels, input_size=input_size)


@register_model(
    "srresnet_x4",
    input_kind="rgb",
    input_size=LR_SIZE,
    description=f"SRResNet x4: 9x9 head/tail, 16 BN residual blocks of 64 channels, PReLU, two x2 pixel shuffles "
    f"(LR input; cost at {LR_SIZE}x{LR_SIZE})",
    task="sr",
)
def srresnet_x4(
    *, channels: int = 3, input_size: int = LR_SIZE, n_blocks: int = 16, n_feats: int = 64
) -> SuperResolution:
    """SRResNet (Ledig et al.) at x4, the MSE-trained generator of SRGAN."""
    check_channels(channels)
    return SuperResolution(
        nn.Sequential(conv3x3(channels, n_feats, 9), nn.PReLU(n_feats)),
        nn.Sequential(*(BnResBlock(n_feats) for _ in range(n_blocks))),
        nn.Sequential(conv3x3(n_feats, n_feats, bias=False), nn.BatchNorm2d(n_feats)),
        nn.Sequential(upsampler(4, n_feats, act="prelu"), conv3x3(n_feats, channels, 9)),
        scale=4,
        channels=channels,
        input_size=input_size,
    )
