"""Quantized checkpoints: what they hold, how they are saved, and how `load_checkpoint` rebuilds them.

A quantized checkpoint is an ordinary dctq checkpoint (models/checkpoint.py) of the fake-quant model
whose `extra` holds

  "quant_recipe": QuantRecipe.to_dict()   - rebuilt on load: create_model -> (QABN) -> quantize_model
                                             -> load_state_dict (calibrated ranges and folded weights);
  "quantization": {"method", "source", "ptq" | "synthesis" + "zero_shot", ...}  - how it was made;

plus the FP checkpoint's "train_config", "qabn" and "qsam" (validation split and QABN routing stay
those of the FP model).

Importing this module registers the "quant_recipe" checkpoint transform. models/ must not import
calibration/, so `models.checkpoint.load_checkpoint` finds `rebuild_quantized` through dctq's entry
points (group "dctq.checkpoint_transforms", declared in pyproject.toml) when it first meets the key.
The module stays light on purpose: loading a PTQ model must not import zero-shot synthesis, training
or data code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from ...common.errors import QuantizationError
from ...models.checkpoint import LoadedCheckpoint, register_checkpoint_transform, save_checkpoint
from .model import iter_quantizers, quantize_model, recipe_of
from .recipe import QuantRecipe

QUANT_RECIPE_KEY = "quant_recipe"
QUANTIZATION_KEY = "quantization"
KEPT_EXTRA = ("train_config", "qabn", "qsam", "input_policy")
"""FP checkpoint entries a quantized checkpoint keeps: its validation split, QABN layout and input policy."""


def rebuild_quantized(model: nn.Module, spec: Any, path: Path) -> nn.Module:
    """Checkpoint transform for "quant_recipe": the float model with the recorded recipe's quantizers."""
    try:
        recipe = QuantRecipe.from_dict(spec)
    except QuantizationError as exc:
        raise QuantizationError(f"{path}: {exc}") from None
    return quantize_model(model.eval(), recipe)


register_checkpoint_transform(QUANT_RECIPE_KEY, rebuild_quantized)


def save_quantized(
    path: Path | str,
    qmodel: nn.Module,
    loaded_fp: LoadedCheckpoint,
    recipe: QuantRecipe | None = None,
    extra_info: dict[str, Any] | None = None,
) -> Path:
    """Write the calibrated `qmodel` (from quantize_model/ptq/zero-shot of `loaded_fp.model`) atomically.

    recipe: checked against the one `qmodel` was made with (None: take that one). extra_info: plain
    data stored as extra["quantization"] (method, data, configs). Returns the path.
    Raises QuantizationError for a model without recipe, a different recipe, or a quantizer that was
    never calibrated (it would load as a different function); ModelError for non-plain extra_info.
    """
    found = recipe_of(qmodel)
    if found is None:
        raise QuantizationError("save_quantized needs a model made by quantize_model / ptq / zero-shot")
    if recipe is not None and recipe != found:
        raise QuantizationError(f"the model was quantized with {found.to_dict()}, not {recipe.to_dict()}")
    uncalibrated = [name for name, q in iter_quantizers(qmodel) if not q.is_calibrated]
    if uncalibrated:
        raise QuantizationError(
            f"{len(uncalibrated)} quantizer(s) have no range ({', '.join(uncalibrated[:3])}"
            f"{', ...' if len(uncalibrated) > 3 else ''}): calibrate the model before saving it"
        )
    extra = {k: v for k, v in loaded_fp.extra.items() if k in KEPT_EXTRA}
    extra[QUANT_RECIPE_KEY] = found.to_dict()
    extra[QUANTIZATION_KEY] = dict(extra_info or {})
    return save_checkpoint(
        path,
        qmodel,
        arch=loaded_fp.arch,
        arch_kwargs=loaded_fp.arch_kwargs,
        class_names=loaded_fp.class_names,
        extra=extra,
    )
