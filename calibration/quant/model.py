"""Insert quantizers into a model by a recipe, calibrate them with a caller-owned forward loop.

    qmodel = quantize_model(model, QuantRecipe())          # folded copy, quantizers inserted
    calibrate(qmodel, lambda m: [m(*batch) for batch in data])  # caller owns the data (ModelOpt style)
    quantization_summary(qmodel)                             # one row per quantizer

Quantized: every nn.Conv2d, nn.ConvTranspose2d (groups 1), nn.Linear (input per tensor, weight per
output channel) and models' ResidualAdd (shortcut input) whose name the recipe does not skip.
Calibration runs the float network (all quantizers pass through) so every activation range is
measured on the data the FP32 model sees; weights then get per-channel max ranges.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Callable, Iterator

import torch
from torch import nn

from ...common.errors import QuantizationError
from ...models.resnet import ResidualAdd
from ..calibrators.max import MaxCalibrator
from ..calibrators.registry import create_calibrator
from .fold import fold_conv_bn
from .modules import QuantConv2d, QuantConvTranspose2d, QuantLinear, QuantResidualAdd
from .offsets import insert_offsets
from .quantizer import QuantState, TensorQuantizer
from .recipe import QuantRecipe

logger = logging.getLogger(__name__)

_WEIGHT_AXIS = {nn.Conv2d: 0, nn.Linear: 0, nn.ConvTranspose2d: 1}
_RECIPE_ATTR = "quant_recipe"


def _device_of(module: nn.Module, fallback: torch.device) -> torch.device:
    for p in module.parameters():
        return p.device
    return fallback


def _act_quantizer(recipe: QuantRecipe, bits: int | None, label: str) -> TensorQuantizer | None:
    """An activation quantizer of `bits` (None: the tensor stays float, no quantizer)."""
    if bits is None:
        return None
    calibrator = create_calibrator(recipe.calibrator, bits=bits, **recipe.calibrator_kwargs())
    return TensorQuantizer(
        bits,
        None,
        narrow_range=recipe.act_narrow_range,
        # an 8-bit override inside a low-bit recipe stays signed (INT8 is signed)
        unsigned=None if recipe.act_unsigned and bits < 8 and not recipe.act_asymmetric else False,
        calibrator=calibrator,
        label=label,
        asymmetric=recipe.act_asymmetric,
    )


def _weight_quantizer(bits: int | None, axis: int, label: str) -> TensorQuantizer | None:
    if bits is None:
        return None
    return TensorQuantizer(
        bits,
        axis,
        narrow_range=True,
        calibrator=MaxCalibrator(bits, axis),
        label=label,
        is_weight=True,
    )


def _quantized(module: nn.Module, name: str, recipe: QuantRecipe) -> nn.Module | None:
    layer = recipe.layer_quant(name)
    if layer is None:
        return None
    kind = type(module)
    if kind is ResidualAdd:
        if layer.input_bits is None:
            return None  # an Add has no weight: with float inputs it is the float Add
        both = recipe.add_inputs == "both"
        return QuantResidualAdd.from_float(
            module,  # type: ignore[arg-type]
            shortcut_quantizer=_act_quantizer(recipe, layer.input_bits, f"{name}.shortcut_quantizer"),  # type: ignore[arg-type]
            input_quantizer=_act_quantizer(recipe, layer.input_bits, f"{name}.input_quantizer")
            if both
            else None,
        )
    if kind not in _WEIGHT_AXIS:
        return None  # subclasses (already quantized layers, exotic variants) are left alone
    if kind is nn.ConvTranspose2d and module.groups != 1:  # type: ignore[union-attr]
        logger.warning("%s: grouped ConvTranspose2d has no single output-channel axis; left in float", name)
        return None
    wrapper = {nn.Conv2d: QuantConv2d, nn.Linear: QuantLinear, nn.ConvTranspose2d: QuantConvTranspose2d}[kind]
    return wrapper.from_float(
        module,  # type: ignore[arg-type]
        input_quantizer=_act_quantizer(recipe, layer.input_bits, f"{name}.input_quantizer"),
        weight_quantizer=_weight_quantizer(layer.weight_bits, _WEIGHT_AXIS[kind], f"{name}.weight_quantizer"),
    )


def quantize_model(model: nn.Module, recipe: QuantRecipe | None = None) -> nn.Module:
    """A copy of `model` (BN folded if recipe.fold_bn) with quantizers inserted per the recipe's rules.

    The quantizers start DISABLED (the copy computes what the model computes) until `calibrate` sets
    their ranges, or a calibrated state dict is loaded (which switches them to QUANTIZING). The recipe
    is kept on the copy (`recipe_of`). Raises QuantizationError when no layer is left to quantize.
    """
    recipe = recipe or QuantRecipe()
    if any(isinstance(m, TensorQuantizer) for m in model.modules()):
        raise QuantizationError(f"{type(model).__name__} already holds quantizers; quantize the float model")
    qmodel = fold_conv_bn(model) if recipe.fold_bn else copy.deepcopy(model)
    fallback = _device_of(qmodel, torch.device("cpu"))
    replaced, skipped = [], []
    for name, module in list(qmodel.named_modules()):
        if not name or (type(module) not in _WEIGHT_AXIS and type(module) is not ResidualAdd):
            continue
        new = _quantized(module, name, recipe)
        if new is None:
            if recipe.layer_quant(name) is None:
                skipped.append(name)
            continue
        new.to(_device_of(module, fallback))
        parent_name, _, child = name.rpartition(".")
        setattr(qmodel.get_submodule(parent_name) if parent_name else qmodel, child, new)
        replaced.append(name)
    if not replaced:
        raise QuantizationError(
            f"no layer of {type(model).__name__} was quantized: it has no Conv2d/Linear/ResidualAdd, "
            f"or the recipe's rules skip them all (skipped: {', '.join(skipped) or 'none'})"
        )
    insert_offsets(qmodel, recipe.offsets)
    setattr(qmodel, _RECIPE_ATTR, recipe)
    logger.info(
        "quantized %d layers (W%dA%d), kept %d in float by rules",
        len(replaced),
        recipe.weight_bits,
        recipe.act_bits,
        len(skipped),
    )
    return qmodel


@torch.no_grad()
def fold_quantized_bn(qmodel: nn.Module, recipe: QuantRecipe) -> nn.Module:
    """Fold the BatchNorms of a model quantized with fold_bn=False into its quantized convs, in place.

    The result has the structure `quantize_model(float_model, recipe)` builds (recipe.fold_bn True)
    and computes the same function: input ranges do not move (they sit before the convs), and the
    per-output-channel max weight ranges are re-measured, which scales each channel's grid by the
    same |gamma / sigma| as its weights, so the quantized weights are the old ones times that factor.
    Zero-shot fine-tuning uses it to train with BN unfolded, as IntraQ does, and still export folded.
    """
    fold_conv_bn(qmodel, inplace=True)
    calibrate_weights(qmodel)
    setattr(qmodel, _RECIPE_ATTR, recipe)
    return qmodel


def recipe_of(qmodel: nn.Module) -> QuantRecipe | None:
    """The recipe `quantize_model` used for `qmodel`, or None for a float model."""
    recipe = getattr(qmodel, _RECIPE_ATTR, None)
    return recipe if isinstance(recipe, QuantRecipe) else None


def iter_quantizers(model: nn.Module) -> Iterator[tuple[str, TensorQuantizer]]:
    """(module name, quantizer) for every TensorQuantizer in `model`, in module order."""
    for name, module in model.named_modules():
        if isinstance(module, TensorQuantizer):
            yield name, module


def _weight_layers(model: nn.Module) -> Iterator[nn.Module]:
    """The quantized layers whose weight is quantized (a rule may leave a layer's weight float)."""
    for module in model.modules():
        if (
            isinstance(module, QuantConv2d | QuantConvTranspose2d | QuantLinear)
            and module.weight_quantizer is not None
        ):
            yield module


def set_quant_state(model: nn.Module, state: QuantState | str) -> None:
    """Put every quantizer in `state` ("disabled" runs the float model; "quantizing" needs ranges)."""
    state = QuantState(state)
    for name, q in iter_quantizers(model):
        if state is QuantState.QUANTIZING and not q.is_calibrated:
            raise QuantizationError(f"quantizer {name} has no range yet; calibrate the model first")
        q.state = state


def calibrate_weights(model: nn.Module) -> None:
    """Per-output-channel max ranges for every weight quantizer, from the current weights."""
    for layer in _weight_layers(model):
        q = layer.weight_quantizer
        q.start_calibration()
        q.calibrator.observe(layer.weight)  # type: ignore[union-attr]
        q.finish_calibration()


@torch.no_grad()
def clip_weights(qmodel: nn.Module) -> int:
    """Clamp every quantized layer's weight into [-amax, amax] of its quantizer, in place.

    The fake-quantized output does not change (the quantizer clamps anyway); exported graphs, which
    leave that clamp out, then compute the same numbers. Needed only after weight ranges were
    trained (learnable scales); max calibration already covers every weight. Returns the number of
    weight values changed.
    """
    changed = 0
    for layer in _weight_layers(qmodel):
        q = layer.weight_quantizer
        if not q.is_calibrated:
            continue
        shape = [1] * layer.weight.dim()
        shape[q.axis if q.axis is not None else 0] = -1
        amax = q.amax.detach().reshape(shape) if q.axis is not None else q.amax.detach()
        clipped = torch.maximum(torch.minimum(layer.weight, amax), -amax)
        changed += int((clipped != layer.weight).sum())
        layer.weight.copy_(clipped)
    return changed


def calibrate(qmodel: nn.Module, forward_loop: Callable[[nn.Module], None]) -> nn.Module:
    """Calibrate every quantizer of `qmodel` in place, then switch them all to QUANTIZING.

    forward_loop(model) runs the calibration data through the model it is given (any number of
    batches; its return value is ignored). It runs in eval mode under torch.no_grad() with every
    quantizer passing tensors through, so ranges describe the float network. Returns `qmodel`.
    Raises QuantizationError when `qmodel` has no quantizers or some quantizer saw no data.
    """
    quantizers = list(iter_quantizers(qmodel))
    if not quantizers:
        raise QuantizationError(f"{type(qmodel).__name__} has no quantizers; call quantize_model() first")
    weight_ids = {id(layer.weight_quantizer) for layer in _weight_layers(qmodel)}
    before = {name: q.state for name, q in quantizers}
    was_training = qmodel.training
    for _, q in quantizers:
        if id(q) in weight_ids:
            q.state = QuantState.DISABLED
        else:
            q.start_calibration()
    try:
        qmodel.eval()
        with torch.no_grad():
            forward_loop(qmodel)
        silent = [name for name, q in quantizers if id(q) not in weight_ids and not q.calibrator.observed]  # type: ignore[union-attr]
        if silent:
            raise QuantizationError(
                f"{len(silent)} quantizer(s) saw no data during calibration ({', '.join(silent[:5])}"
                f"{', ...' if len(silent) > 5 else ''}): the forward loop never ran those layers; feed it "
                "at least one batch, or add 'skip' rules for layers the model does not use"
            )
        for _, q in quantizers:
            if id(q) not in weight_ids:
                q.finish_calibration()
        calibrate_weights(qmodel)
    except BaseException:
        for name, q in quantizers:
            q.state = before[name]
        raise
    finally:
        qmodel.train(was_training)
    logger.info("calibrated %d quantizers", len(quantizers))
    return qmodel


@dataclasses.dataclass(frozen=True)
class QuantizerSummary:
    """One quantizer: where it is, its grid and its range (amax over channels when per channel)."""

    name: str
    bits: int
    axis: int | None
    qmin: int
    qmax: int
    state: str
    learnable: bool
    channels: int
    amax_min: float | None
    amax_max: float | None

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def quantization_summary(qmodel: nn.Module) -> list[QuantizerSummary]:
    """One QuantizerSummary per TensorQuantizer in module order (amax None until calibrated)."""
    rows = []
    for name, q in iter_quantizers(qmodel):
        amax = q.amax.detach()
        rows.append(
            QuantizerSummary(
                name=name,
                bits=q.bits,
                axis=q.axis,
                qmin=q.qmin,
                qmax=q.qmax,
                state=q.state.value,
                learnable=q.learnable,
                channels=int(amax.numel()),
                amax_min=float(amax.min()) if amax.numel() else None,
                amax_max=float(amax.max()) if amax.numel() else None,
            )
        )
    return rows
