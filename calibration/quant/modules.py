"""Quantized drop-in layers: Conv2d / ConvTranspose2d / Linear / ResidualAdd with TensorQuantizers.

Each is a subclass of the float layer (isinstance checks, parameter names and state-dict keys stay),
built by `from_float` sharing the float layer's parameters, with
- `input_quantizer`: per tensor, on the activation entering the layer;
- `weight_quantizer`: per output channel (axis 0 for Conv2d/Linear, 1 for ConvTranspose2d, whose
  weight is [in, out, kH, kW]);
either of which is None where a recipe rule leaves that tensor float (LayerRule input/weight "float");
- for the residual Add, `shortcut_quantizer` on the shortcut input: TensorRT fuses the Add into the
  conv producing the other input and needs Q/DQ on the residual one (ARCHITECTURE.md contract); with
  recipe add_inputs="both" also `input_quantizer` on the conv side (ONNX Runtime's integer kernels).
"""

from __future__ import annotations

from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from ...models.resnet import ResidualAdd
from .quantizer import TensorQuantizer

M = TypeVar("M", bound=nn.Module)


def _conv_args(conv: nn.Conv2d | nn.ConvTranspose2d) -> dict:
    """Constructor arguments that rebuild `conv`'s shape on the meta device (parameters come later)."""
    args = {
        "in_channels": conv.in_channels,
        "out_channels": conv.out_channels,
        "kernel_size": conv.kernel_size,
        "stride": conv.stride,
        "padding": conv.padding,
        "dilation": conv.dilation,
        "groups": conv.groups,
        "bias": conv.bias is not None,
        "padding_mode": conv.padding_mode,
        "device": "meta",
    }
    if isinstance(conv, nn.ConvTranspose2d):
        args["output_padding"] = conv.output_padding
    return args


def _adopt(
    q: M, layer: nn.Module, input_quantizer: TensorQuantizer | None, weight_quantizer: TensorQuantizer | None
) -> M:
    """Give the (meta-device) quantized layer `q` the float layer's own parameters and the quantizers."""
    q.weight = layer.weight
    q.bias = layer.bias
    q.input_quantizer = input_quantizer
    q.weight_quantizer = weight_quantizer
    q.train(layer.training)
    return q


def _apply(quantizer: TensorQuantizer | None, x: torch.Tensor) -> torch.Tensor:
    return x if quantizer is None else quantizer(x)


class QuantConv2d(nn.Conv2d):
    """Conv2d whose input and weight pass through fake quantizers first."""

    input_quantizer: TensorQuantizer | None
    weight_quantizer: TensorQuantizer | None

    @classmethod
    def from_float(
        cls,
        conv: nn.Conv2d,
        *,
        input_quantizer: TensorQuantizer | None,
        weight_quantizer: TensorQuantizer | None,
    ) -> QuantConv2d:
        return _adopt(cls(**_conv_args(conv)), conv, input_quantizer, weight_quantizer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(
            _apply(self.input_quantizer, x), _apply(self.weight_quantizer, self.weight), self.bias
        )


class QuantConvTranspose2d(nn.ConvTranspose2d):
    """ConvTranspose2d (groups == 1) with input and per-output-channel (axis 1) weight quantizers."""

    input_quantizer: TensorQuantizer | None
    weight_quantizer: TensorQuantizer | None

    @classmethod
    def from_float(
        cls,
        conv: nn.ConvTranspose2d,
        *,
        input_quantizer: TensorQuantizer | None,
        weight_quantizer: TensorQuantizer | None,
    ) -> QuantConvTranspose2d:
        return _adopt(cls(**_conv_args(conv)), conv, input_quantizer, weight_quantizer)

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        output_padding = self.output_padding
        if output_size is not None:  # torch's own rule for the padding that reaches output_size
            output_padding = self._output_padding(
                x,
                output_size,
                self.stride,
                self.padding,
                self.kernel_size,
                2,
                self.dilation,  # type: ignore[arg-type]
            )
        return F.conv_transpose2d(
            _apply(self.input_quantizer, x),
            _apply(self.weight_quantizer, self.weight),
            self.bias,
            self.stride,
            self.padding,  # type: ignore[arg-type]
            output_padding,
            self.groups,
            self.dilation,
        )


class QuantLinear(nn.Linear):
    """Linear whose input (per tensor) and weight (per output feature) are fake-quantized."""

    input_quantizer: TensorQuantizer | None
    weight_quantizer: TensorQuantizer | None

    @classmethod
    def from_float(
        cls,
        linear: nn.Linear,
        *,
        input_quantizer: TensorQuantizer | None,
        weight_quantizer: TensorQuantizer | None,
    ) -> QuantLinear:
        q = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, device="meta")
        return _adopt(q, linear, input_quantizer, weight_quantizer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(
            _apply(self.input_quantizer, x), _apply(self.weight_quantizer, self.weight), self.bias
        )


class QuantResidualAdd(ResidualAdd):
    """`x + Q(shortcut)`: the residual input of the Add quantized; `x` (the conv output) too when an
    input quantizer is given (recipe add_inputs="both")."""

    shortcut_quantizer: TensorQuantizer
    input_quantizer: TensorQuantizer | None

    @classmethod
    def from_float(
        cls,
        add: ResidualAdd,
        *,
        shortcut_quantizer: TensorQuantizer,
        input_quantizer: TensorQuantizer | None = None,
    ) -> QuantResidualAdd:
        q = cls()
        q.shortcut_quantizer = shortcut_quantizer
        q.input_quantizer = input_quantizer
        q.train(add.training)
        return q

    def forward(self, x: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
        if self.input_quantizer is not None:
            x = self.input_quantizer(x)
        return x + self.shortcut_quantizer(shortcut)


QUANT_MODULES = (QuantConv2d, QuantConvTranspose2d, QuantLinear, QuantResidualAdd)


def as_float(layer: nn.Module) -> nn.Module:
    """The float layer a quantized one wraps (Conv2d, ConvTranspose2d, Linear, ResidualAdd), sharing its
    parameters: the inverse of `from_float`. Any other module comes back as it is."""
    if isinstance(layer, QuantResidualAdd):
        out: nn.Module = ResidualAdd()
    elif isinstance(layer, QuantConv2d | QuantConvTranspose2d):
        base = nn.ConvTranspose2d if isinstance(layer, QuantConvTranspose2d) else nn.Conv2d
        out = base(**_conv_args(layer))
    elif isinstance(layer, QuantLinear):
        out = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None, device="meta")
    else:
        return layer
    if not isinstance(out, ResidualAdd):
        out.weight = layer.weight
        out.bias = layer.bias
    out.train(layer.training)
    return out
