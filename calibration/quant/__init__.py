"""quant: how a model is quantized (ModelOpt's nn/ and model_quant), light enough for every checkpoint load.

- quantizer: TensorQuantizer (the grid, states, STE/LSQ gradients) and QuantState;
- modules: QuantConv2d, QuantConvTranspose2d, QuantLinear, QuantResidualAdd (subclasses of the float layers);
- fold: Conv+BN folding;
- recipe: QuantRecipe, LayerRule, PRESETS, get_recipe, and the `--bits/--recipe/--calibrator` translation
  (parse_bits, build_recipe);
- model: quantize_model (a quantized copy), calibrate (a caller-owned forward loop), quantization_summary;
- checkpoint: what a quantized checkpoint holds, save_quantized, and its rebuild on load;
- export: prepare_for_export (INT8 only, calibrated, weights clipped) for the ONNX / TorchScript exporters.
"""

from .checkpoint import KEPT_EXTRA, QUANT_RECIPE_KEY, QUANTIZATION_KEY, rebuild_quantized, save_quantized
from .export import prepare_for_export
from .fold import find_conv_bn_pairs, fold_conv_bn
from .model import (
    QuantizerSummary,
    calibrate,
    clip_weights,
    fold_quantized_bn,
    iter_quantizers,
    quantization_summary,
    quantize_model,
    recipe_of,
    set_quant_state,
)
from .modules import QUANT_MODULES, QuantConv2d, QuantConvTranspose2d, QuantLinear, QuantResidualAdd
from .quantizer import QuantState, TensorQuantizer
from .recipe import PRESETS, LayerRule, QuantRecipe, build_recipe, get_recipe, parse_bits

__all__ = [
    "KEPT_EXTRA",
    "PRESETS",
    "QUANTIZATION_KEY",
    "QUANT_MODULES",
    "QUANT_RECIPE_KEY",
    "LayerRule",
    "QuantConv2d",
    "QuantConvTranspose2d",
    "QuantLinear",
    "QuantRecipe",
    "QuantResidualAdd",
    "QuantState",
    "QuantizerSummary",
    "TensorQuantizer",
    "build_recipe",
    "calibrate",
    "clip_weights",
    "find_conv_bn_pairs",
    "fold_conv_bn",
    "fold_quantized_bn",
    "get_recipe",
    "iter_quantizers",
    "parse_bits",
    "prepare_for_export",
    "quantization_summary",
    "quantize_model",
    "rebuild_quantized",
    "recipe_of",
    "save_quantized",
    "set_quant_state",
]
