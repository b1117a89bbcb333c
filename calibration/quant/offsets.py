"""Per-channel distribution offsets around an activation quantizer (ODM's selective offsets).

    OffsetQuantizer(quantizer, channels, kind): x -> quantizer((x - shift) / scale) * scale + shift

with shift [C] and scale = exp(log_scale) [C] along axis 1 (channels), learnable. The quantizer sees each
channel moved to a common centre ("shift") and spread ("scale"), so one per-tensor range fits channels
whose statistics differ; the output is back in the layer's units, so the quantized layer computes what it
computed before. In an exported graph the offsets are float Sub/Div before QuantizeLinear and Mul/Add
after DequantizeLinear (exact; the Conv then reads a float input, so ORT does not fuse it into an integer
kernel). Which layers get which kind is recorded in QuantRecipe.offsets, so `quantize_model` rebuilds the
structure and a checkpoint's state dict fills in the values.
"""

from __future__ import annotations

import torch
from torch import nn

from ...common.errors import QuantizationError
from .quantizer import QuantState, TensorQuantizer

OFFSET_KINDS = ("shift", "scale", "both")


class OffsetQuantizer(nn.Module):
    """`quantizer` between a per-channel normalisation and its inverse (module docstring)."""

    def __init__(self, quantizer: TensorQuantizer, channels: int, kind: str) -> None:
        super().__init__()
        if kind not in OFFSET_KINDS:
            raise QuantizationError(f"offset kind must be one of {OFFSET_KINDS}, got {kind!r}")
        if quantizer.axis is not None:
            raise QuantizationError(f"offsets wrap per-tensor activation quantizers, not {quantizer.label}")
        self.quantizer = quantizer
        self.kind = kind
        self.shift = nn.Parameter(torch.zeros(channels)) if kind in ("shift", "both") else None
        self.log_scale = nn.Parameter(torch.zeros(channels)) if kind in ("scale", "both") else None

    def extra_repr(self) -> str:
        return (
            f"kind={self.kind}, channels={(self.shift if self.shift is not None else self.log_scale).numel()}"
        )

    @torch.no_grad()
    def set_offsets(self, shift: torch.Tensor | None, scale: torch.Tensor | None) -> None:
        """Initial values ([C] each; None leaves that part as it is)."""
        if shift is not None and self.shift is not None:
            self.shift.copy_(shift)
        if scale is not None and self.log_scale is not None:
            self.log_scale.copy_(torch.log(scale.clamp_min(1e-6)))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """What the inner quantizer sees: (x - shift) / scale, per channel (axis 1)."""
        shape = [1, -1] + [1] * (x.dim() - 2)
        if self.shift is not None:
            x = x - self.shift.reshape(shape)
        if self.log_scale is not None:
            x = x * torch.exp(-self.log_scale).reshape(shape)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.quantizer.state is QuantState.DISABLED:
            return x
        shape = [1, -1] + [1] * (x.dim() - 2)
        q = self.quantizer(self.normalize(x))
        if self.log_scale is not None:
            q = q * torch.exp(self.log_scale).reshape(shape)
        if self.shift is not None:
            q = q + self.shift.reshape(shape)
        return q


def insert_offsets(qmodel: nn.Module, offsets: tuple[tuple[str, str], ...]) -> None:
    """Wrap the input quantizer of each (layer name, kind) of `offsets` in an OffsetQuantizer, in place.

    Raises QuantizationError for a name that is not a quantized layer of `qmodel`.
    """
    for name, kind in offsets:
        try:
            layer = qmodel.get_submodule(name)
        except AttributeError:
            raise QuantizationError(
                f"offset layer {name!r} is not a module of {type(qmodel).__name__}"
            ) from None
        quantizer = getattr(layer, "input_quantizer", None)
        if not isinstance(quantizer, TensorQuantizer):
            raise QuantizationError(
                f"offset layer {name!r} has no activation quantizer to wrap (skipped by a rule?)"
            )
        channels = getattr(layer, "in_channels", None) or getattr(layer, "in_features", None)
        layer.input_quantizer = OffsetQuantizer(quantizer, int(channels), kind)
