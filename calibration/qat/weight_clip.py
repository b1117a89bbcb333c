"""ODM v2's layer-wise weight clipping correction, as designed here (the paper's exact rule is not
public): per quantized layer, the weight range is a ratio r_l of the per-output-channel max, chosen once
before training from RATIOS to minimise the layer's output error on the calibration batches,

    r_l = argmin_r || f(Q_a(x), W) - f(Q_a(x), Q_r(W)) ||^2,

with Q_a(x) the layer's calibrated (quantized) input and Q_r the weight quantizer at range r * max|W_c|.
At 2-4 bits the max range wastes most levels on a few large weights; clipping trades their error for a
finer grid on the rest, and the best trade differs per layer. During QAT the ranges then track
r_l * max|W_c| of the current weights after every step (`track_weight_ranges`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..quant.modules import QuantConv2d, QuantConvTranspose2d, QuantLinear

RATIOS = tuple(round(1.0 - 0.05 * i, 2) for i in range(11))
"""Weight clipping ratios tried: 1.0, 0.95, ..., 0.5."""
_LAYERS = (QuantConv2d, QuantConvTranspose2d, QuantLinear)


def _weight_layers(qmodel: nn.Module) -> list[tuple[str, nn.Module]]:
    """The quantized layers whose weight is quantized (a LayerRule may leave a layer's weight float)."""
    return [
        (n, m) for n, m in qmodel.named_modules() if isinstance(m, _LAYERS) and m.weight_quantizer is not None
    ]


def _output(layer: nn.Module, x: Tensor, w: Tensor) -> Tensor:
    if isinstance(layer, QuantLinear):
        return F.linear(x, w, layer.bias)
    if isinstance(layer, QuantConvTranspose2d):
        return F.conv_transpose2d(
            x, w, layer.bias, layer.stride, layer.padding, layer.output_padding, layer.groups, layer.dilation
        )
    return layer._conv_forward(x, w, layer.bias)


def _channel_max(layer: nn.Module) -> Tensor:
    q = layer.weight_quantizer
    dims = [d for d in range(layer.weight.dim()) if d != q.axis]
    return layer.weight.detach().abs().amax(dim=dims)


@torch.no_grad()
def track_weight_ranges(qmodel: nn.Module, ratios: dict[str, float] | None = None) -> None:
    """Every weight quantizer's range = ratio x the per-output-channel max of the current weights (ratio
    1 for layers `ratios` does not name): what QAT does after each step."""
    ratios = ratios or {}
    for name, layer in _weight_layers(qmodel):
        q = layer.weight_quantizer
        if q.learnable:
            continue
        q.set_amax(_channel_max(layer) * ratios.get(name, 1.0))


@torch.no_grad()
def search_weight_clip(
    qmodel: nn.Module, forward_loop: Callable[[nn.Module], None], ratios: tuple[float, ...] = RATIOS
) -> dict[str, float]:
    """{layer: best ratio} for every quantized layer (module docstring); `forward_loop(model)` runs the
    calibration batches through the quantized model. Leaves the weight ranges at the chosen ratios."""
    layers = _weight_layers(qmodel)
    errors = {name: torch.zeros(len(ratios), dtype=torch.float64) for name, _ in layers}
    handles = []

    for name, layer in layers:

        def hook(module: nn.Module, inputs: tuple[Tensor, ...], name: str = name) -> None:
            x = inputs[0] if module.input_quantizer is None else module.input_quantizer(inputs[0])
            w = module.weight
            reference = _output(module, x, w)
            q = module.weight_quantizer
            top = _channel_max(module)
            for i, r in enumerate(ratios):
                q.set_amax(top * r)
                errors[name][i] += float((_output(module, x, q(w)) - reference).square().sum())
            q.set_amax(top)

        handles.append(layer.register_forward_pre_hook(hook))
    was_training = qmodel.training
    qmodel.eval()
    try:
        forward_loop(qmodel)
    finally:
        for h in handles:
            h.remove()
        qmodel.train(was_training)
    chosen = {name: float(ratios[int(torch.argmin(err))]) for name, err in errors.items()}
    track_weight_ranges(qmodel, chosen)
    return chosen
