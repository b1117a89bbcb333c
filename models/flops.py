"""Model size and cost: parameter counts, multiply-accumulates (MACs) and FLOPs, example inputs.

Units: one MAC is one multiply plus one add; FLOPs = 2 x MACs. Only convolutions (incl.
transposed) and linear layers are counted, biases excluded; norms, activations, pooling, residual
adds, the DCT stem's dequantize/normalize and resampling are not (each < 1% of a ResNet). This
matches fvcore/ptflops-style "GMACs" and torchvision's "GFLOPS" column (4.09 for ResNet-50 v1.5,
which is in fact GMACs).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from ..common.errors import ModelError
from .registry import create_model, list_models


def count_params(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameter elements (buffers such as BN running stats and stem stats excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _model_kind_size(model: nn.Module, input_kind: str | None, input_size: int | None) -> tuple[str, int]:
    kind = input_kind if input_kind is not None else getattr(model, "input_kind", None)
    size = input_size if input_size is not None else getattr(model, "input_size", None)
    if kind not in ("dct", "rgb"):
        raise ModelError(f"input_kind must be 'dct' or 'rgb' (the model has none), got {kind!r}")
    if not isinstance(size, int) or size < 1:
        raise ModelError(f"input_size must be a positive pixel count, got {size!r}")
    if kind == "dct" and size % 16:
        raise ModelError(f"DCT input_size must be a multiple of 16 (the 4:2:0 MCU), got {size}")
    return kind, size


def example_qt(batch: int = 1, *, device: torch.device | str | None = None) -> torch.Tensor:
    """[batch, 3, 64] float32 quantization tables: distinct plausible steps 1 + u + v per frequency."""
    k = torch.arange(64)
    steps = (1 + k // 8 + k % 8).float()
    return steps.expand(batch, 3, 64).clone().to(device)


def example_inputs(
    model: nn.Module,
    batch: int = 1,
    *,
    input_kind: str | None = None,
    input_size: int | None = None,
    with_qt: bool = False,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, ...]:
    """Correctly shaped random inputs so that `model(*inputs)` runs.

    DCT: (y [B, 64, S/8, S/8], cbcr [B, 128, S/16, S/16], qt [B, 3, 64]), float32 tensors holding
    small integers (like quantized coefficients) and steps 1..15. RGB: (x [B, 3, S, S],) standard
    normal, plus qt when `with_qt` (for QABN models). Kind and size default to the model's attributes.
    """
    kind, size = _model_kind_size(model, input_kind, input_size)
    gen = torch.Generator().manual_seed(seed)
    if device is None:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
    qt = example_qt(batch, device=device)
    if kind == "rgb":
        x = torch.randn(batch, 3, size, size, generator=gen).to(device)
        return (x, qt) if with_qt else (x,)
    hb = size // 8
    y = torch.round(torch.randn(batch, 64, hb, hb, generator=gen) * 4).to(device)
    cbcr = torch.round(torch.randn(batch, 128, hb // 2, hb // 2, generator=gen) * 2).to(device)
    return y, cbcr, qt


def _macs_hook(counter: list[int]):
    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        if isinstance(module, nn.ConvTranspose2d):
            # every input element scatters into k*k outputs of each output channel in its group
            kh, kw = module.kernel_size
            counter[0] += inputs[0].numel() * (module.out_channels // module.groups) * kh * kw
        elif isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            counter[0] += output.numel() * (module.in_channels // module.groups) * kh * kw
        elif isinstance(module, nn.Linear):
            counter[0] += output.numel() * module.in_features

    return hook


@contextlib.contextmanager
def _hooks(model: nn.Module, counter: list[int]) -> Iterator[None]:
    handles = [
        m.register_forward_hook(_macs_hook(counter))
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear)
    ]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def count_macs(model: nn.Module, input_kind: str | None = None, input_size: int | None = None) -> int:
    """Multiply-accumulates of one forward pass at batch 1 (conv, transposed conv, linear).

    Runs the model once in eval mode under no_grad (works on the meta device: nothing is computed).
    Kind and size default to the model's `input_kind` / `input_size`.
    """
    kind, size = _model_kind_size(model, input_kind, input_size)
    inputs = example_inputs(model, 1, input_kind=kind, input_size=size)
    counter = [0]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), _hooks(model, counter):
            model(*inputs)
    finally:
        model.train(was_training)
    return counter[0]


def count_flops(model: nn.Module, input_kind: str | None = None, input_size: int | None = None) -> int:
    """FLOPs of one forward pass at batch 1 = 2 x count_macs (a MAC is a multiply and an add)."""
    return 2 * count_macs(model, input_kind, input_size)


@dataclasses.dataclass(frozen=True)
class ModelSummary:
    """One row of `dctq models`: registry entry plus its size and cost at its input size."""

    name: str
    input_kind: str
    input_size: int
    description: str
    params: int
    macs: int
    task: str = "classify"

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (`dctq models --json`): the fields and `flops` ("task" last: added with the
        autoencoders)."""
        return {
            "name": self.name,
            "input_kind": self.input_kind,
            "input_size": self.input_size,
            "params": self.params,
            "macs": self.macs,
            "flops": self.flops,
            "description": self.description,
            "task": self.task,
        }


def summarize_models(pattern: str = "*", *, num_classes: int | None = None) -> list[ModelSummary]:
    """Build every registered model matching `pattern` (on the meta device: no memory, no compute)
    and count its parameters and MACs at its default input size (default num_classes unless given;
    SR models at their stated LR input size, ModelInfo.input_size).
    """
    rows = []
    for info in list_models(pattern):
        with torch.device("meta"):
            model = create_model(info.name, num_classes=num_classes)
        rows.append(
            ModelSummary(
                name=info.name,
                input_kind=info.input_kind,
                input_size=info.input_size,
                description=info.description,
                params=count_params(model),
                macs=count_macs(model),
                task=info.task,
            )
        )
    return rows
