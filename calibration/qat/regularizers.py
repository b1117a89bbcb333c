"""ODM's regularisers of the features entering quantized layers, and the tap that records those features.

The features are what each activation quantizer of a quantized layer receives (after ODM's offsets, if
any): `FeatureTap` records them with forward pre-hooks for one forward pass, keeping their graph.

- variance (v1, "x_i is the feature, expected to have low standard deviation"):
  L_V = mean over layers l of mean over images n of std(x_l[n]) (over channels and positions), so that
  every image's features fill one static range alike; layers count equally whatever their scale.
- mismatch (v2, "distance of features to a fixed quantization range"):
  L_M = mean over layers of mean((x - clamp(x, lo, hi))^2) / (hi - lo)^2, with [lo, hi] the quantizer's
  current interval taken as a constant (the range itself is not pulled by L_M): it pushes only the
  features that would be clipped, in units of the range.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn

from ..quant.modules import QuantConv2d, QuantConvTranspose2d, QuantLinear
from ..quant.offsets import OffsetQuantizer
from ..quant.quantizer import TensorQuantizer

_LAYERS = (QuantConv2d, QuantConvTranspose2d, QuantLinear)


def activation_quantizers(qmodel: nn.Module) -> Iterator[tuple[str, TensorQuantizer]]:
    """(layer name, the TensorQuantizer of its input) for every quantized layer with a quantized input, in
    module order."""
    for name, module in qmodel.named_modules():
        if isinstance(module, _LAYERS):
            q = module.input_quantizer
            if q is None:  # a LayerRule left this layer's input float
                continue
            yield name, (q.quantizer if isinstance(q, OffsetQuantizer) else q)


class FeatureTap:
    """Records, for one forward pass, the input of every activation quantizer of quantized layers.

    with FeatureTap(qmodel) as tap:
        out = qmodel(x)
    loss = variance_loss(tap.features)
    """

    def __init__(self, qmodel: nn.Module) -> None:
        self.quantizers = dict(activation_quantizers(qmodel))
        self.features: dict[str, Tensor] = {}
        self._handles: list = []

    def __enter__(self) -> FeatureTap:
        self.features = {}
        for name, q in self.quantizers.items():
            self._handles.append(q.register_forward_pre_hook(self._hook(name)))
        return self

    def _hook(self, name: str):  # type: ignore[no-untyped-def]
        def hook(module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
            self.features[name] = inputs[0]

        return hook

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


def variance_loss(features: dict[str, Tensor]) -> Tensor:
    """L_V (module docstring): the mean over layers of each image's feature standard deviation."""
    terms = [x.flatten(1).std(dim=1, unbiased=False).mean() for x in features.values()]
    return torch.stack(terms).mean()


def mismatch_loss(features: dict[str, Tensor], quantizers: dict[str, TensorQuantizer]) -> Tensor:
    """L_M (module docstring): features' squared distance to their quantizer's fixed interval."""
    terms = []
    for name, x in features.items():
        lo, hi = quantizers[name].interval()
        outside = x - torch.minimum(torch.maximum(x, lo), hi)
        terms.append(outside.square().mean() / (hi - lo).square().clamp_min(1e-12))
    return torch.stack(terms).mean()
