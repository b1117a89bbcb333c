"""The quantized layers of a model by name: which quantizers each holds, running some of them in float
for a while, and returning layers to float for good.

A "layer" is a module `quantize_model` replaced (QuantConv2d, QuantConvTranspose2d, QuantLinear,
QuantResidualAdd), named as in the float model ("stages.0.1.conv2"). PTQ ranges are measured on the
float network, so the ranges of the other layers do not depend on which layers are quantized: running a
layer's quantizers DISABLED computes exactly what quantizing the model with a "skip" rule for that layer
computes. That makes the per-layer sensitivity of a calibrated model cheap (no new calibration), and
`to_float` turns the chosen layers into float modules with the recipe to match, so the result saves and
reloads as an ordinary quantized checkpoint.

    layers = quantized_layers(qmodel)                    # {"front.upscale.0": [input, weight quantizers], ...}
    with layers_in_float(qmodel, ["fc"]): ...            # fc runs float inside the block
    with only_layers_quantized(qmodel, ["fc"]): ...      # everything but fc runs float
    to_float(qmodel, ["fc"])                             # for good: fc is an nn.Linear again, recipe updated
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
from collections.abc import Collection, Iterator

from torch import nn

from ...common.errors import QuantizationError
from .model import _RECIPE_ATTR, recipe_of
from .modules import QUANT_MODULES, as_float
from .quantizer import QuantState, TensorQuantizer
from .recipe import LayerRule


def quantized_layers(qmodel: nn.Module) -> dict[str, list[TensorQuantizer]]:
    """{layer name: its quantizers (input, weight, shortcut; those it has)} in module order."""
    out: dict[str, list[TensorQuantizer]] = {}
    for name, module in qmodel.named_modules():
        if isinstance(module, QUANT_MODULES):
            out[name] = [q for q in module.children() if isinstance(q, TensorQuantizer)]
    return out


def _check_names(layers: dict[str, list[TensorQuantizer]], names: Collection[str]) -> None:
    unknown = [n for n in names if n not in layers]
    if unknown:
        raise QuantizationError(
            f"{', '.join(unknown[:3])} {'is not a quantized layer' if len(unknown) == 1 else 'are not quantized layers'}"
            f" of this model; its quantized layers are {', '.join(list(layers)[:6])}{', ...' if len(layers) > 6 else ''}"
        )


@contextlib.contextmanager
def _states(qmodel: nn.Module, disabled: Collection[str]) -> Iterator[None]:
    layers = quantized_layers(qmodel)
    _check_names(layers, disabled)
    before = {id(q): (q, q.state) for qs in layers.values() for q in qs}
    try:
        for name in disabled:
            for q in layers[name]:
                q.state = QuantState.DISABLED
        yield
    finally:
        for q, state in before.values():
            q.state = state


def layers_in_float(qmodel: nn.Module, names: Collection[str]) -> contextlib.AbstractContextManager[None]:
    """Inside the block the layers `names` run in float (their quantizers DISABLED); the states are
    restored afterwards. Raises QuantizationError for a name that is not a quantized layer."""
    return _states(qmodel, list(names))


def only_layers_quantized(
    qmodel: nn.Module, names: Collection[str]
) -> contextlib.AbstractContextManager[None]:
    """Inside the block every quantized layer but `names` runs in float. Raises as `layers_in_float`."""
    layers = quantized_layers(qmodel)
    _check_names(layers, names)
    return _states(qmodel, [n for n in layers if n not in set(names)])


def to_float(qmodel: nn.Module, names: Collection[str]) -> nn.Module:
    """Return the layers `names` of `qmodel` to float in place: each becomes the float layer it wrapped
    (same parameters) and the model's recipe gets a "skip" rule per name in front of its rules, so
    `save_quantized` writes it and loading rebuilds exactly this model. Returns `qmodel`.

    Raises QuantizationError for a model without recipe, or a name that is not a quantized layer.
    """
    recipe = recipe_of(qmodel)
    if recipe is None:
        raise QuantizationError("to_float needs a model made by quantize_model / ptq / zero-shot")
    names = list(dict.fromkeys(names))
    if not names:
        return qmodel
    _check_names(quantized_layers(qmodel), names)
    left = set(quantized_layers(qmodel)) - set(names)
    if not left:
        raise QuantizationError(
            "returning every quantized layer to float leaves a float model; use the FP checkpoint"
        )
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = qmodel.get_submodule(parent_name) if parent_name else qmodel
        setattr(parent, child, as_float(getattr(parent, child)))
    # glob.escape: a name is matched literally even if it held a wildcard character
    rules = tuple(LayerRule(glob.escape(name), "skip") for name in names)
    setattr(qmodel, _RECIPE_ATTR, dataclasses.replace(recipe, rules=rules + recipe.rules))
    return qmodel
