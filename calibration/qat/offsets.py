"""Which quantized layers get ODM's distribution offsets, and their starting values.

ODM v1 adds channel-wise *shift* offsets to layers whose channel means spread the most and *scale*
offsets to layers whose channel standard deviations spread the most; the paper does not say how "most"
is decided. Here, measured on the calibration batches for the input x [N, C, ...] of every quantized
layer (mu_c, sigma_c: per-channel mean and std over images and positions; sigma: the whole tensor's std):

    mean spread  = std_c(mu_c) / sigma             (how far channel centres sit apart, in units of the tensor)
    std spread   = std_c(sigma_c) / mean_c(sigma_c)  (coefficient of variation of the channel spreads)

and the top `fraction` of the quantized layers by each statistic get that offset ("both" when in both
lists). A ranked share rather than a fixed threshold keeps the extra storage predictable (about
fraction * 2 * C values per layer) on any network. Shift offsets are only given to inputs that take
negative values: shifting a post-ReLU input would cost its unsigned grid a bit.

Starting values: shift_c = mu_c - mean_c(mu_c) (every channel centred where the average channel is),
scale_c = sigma_c / mean_c(sigma_c) (every channel spread like the average one); both then train.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..quant.offsets import OffsetQuantizer
from .regularizers import activation_quantizers


@dataclasses.dataclass(frozen=True)
class ChannelStats:
    """Per-channel statistics of one layer input, accumulated over batches (float64)."""

    mean: Tensor
    std: Tensor
    tensor_std: float
    signed: bool

    @property
    def mean_spread(self) -> float:
        return float(self.mean.std(unbiased=False) / max(self.tensor_std, 1e-12))

    @property
    def std_spread(self) -> float:
        return float(self.std.std(unbiased=False) / self.std.mean().clamp_min(1e-12))


@torch.no_grad()
def channel_stats(qmodel: nn.Module, forward_loop: Callable[[nn.Module], None]) -> dict[str, ChannelStats]:
    """ChannelStats of the input of every quantized layer over the batches `forward_loop` runs (the model
    as it is: float when its quantizers are disabled)."""
    sums: dict[str, list] = {}
    # forward_loop may run many batches: each forward adds to running sums instead of keeping the features
    handles = []
    for name, q in activation_quantizers(qmodel):

        def hook(module: nn.Module, inputs: tuple[Tensor, ...], name: str = name) -> None:
            x = inputs[0].detach().double().transpose(0, 1).flatten(1)  # [C, N * positions]
            s = sums.setdefault(
                name, [0, torch.zeros(x.shape[0], dtype=torch.float64), torch.zeros_like(x[:, 0]), False]
            )
            s[0] += x.shape[1]
            s[1] += x.sum(1)
            s[2] += x.square().sum(1)
            s[3] = s[3] or bool((x < 0).any())

        handles.append(q.register_forward_pre_hook(hook))
    try:
        forward_loop(qmodel)
    finally:
        for h in handles:
            h.remove()
    stats = {}
    for name, (n, total, squares, signed) in sums.items():
        mean = total / n
        var = (squares / n - mean.square()).clamp_min(0)
        tensor_mean = total.sum() / (n * mean.numel())
        tensor_var = squares.sum() / (n * mean.numel()) - tensor_mean.square()
        stats[name] = ChannelStats(mean, var.sqrt(), math.sqrt(max(float(tensor_var), 0.0)), signed)
    return stats


def select_offsets(
    stats: dict[str, ChannelStats], kinds: str, fraction: float
) -> tuple[tuple[str, str], ...]:
    """(layer, kind) pairs for QuantRecipe.offsets (module docstring); kinds: "shift", "scale" or "both"."""
    count = max(1, round(fraction * len(stats)))
    chosen: dict[str, set[str]] = {}
    if kinds in ("shift", "both"):
        signed = [n for n in stats if stats[n].signed]
        for name in sorted(signed, key=lambda n: -stats[n].mean_spread)[:count]:
            chosen.setdefault(name, set()).add("shift")
    if kinds in ("scale", "both"):
        for name in sorted(stats, key=lambda n: -stats[n].std_spread)[:count]:
            chosen.setdefault(name, set()).add("scale")
    order = list(stats)
    return tuple(
        (name, "both" if len(parts) == 2 else next(iter(parts)))
        for name, parts in sorted(chosen.items(), key=lambda item: order.index(item[0]))
    )


@torch.no_grad()
def init_offsets(qmodel: nn.Module, stats: dict[str, ChannelStats]) -> None:
    """Starting values of every OffsetQuantizer of `qmodel` from `stats` (module docstring)."""
    for name, module in qmodel.named_modules():
        q = getattr(module, "input_quantizer", None)
        if isinstance(q, OffsetQuantizer) and name in stats:
            st = stats[name]
            shift = (st.mean - st.mean.mean()).float()
            scale = (st.std / st.std.mean().clamp_min(1e-12)).float().clamp(0.05, 20)
            q.set_offsets(shift, scale)
