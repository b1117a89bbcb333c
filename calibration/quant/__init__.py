"""quant: how a model is quantized (ModelOpt's nn/ and model_quant), light enough for every checkpoint load.

- quantizer: TensorQuantizer (the grid, states, STE/LSQ gradients) and QuantState;
- modules: QuantConv2d, QuantConvTranspose2d, QuantLinear, QuantResidualAdd (subclasses of the float layers);
- fold: Conv+BN folding;
- recipe: QuantRecipe, LayerRule (skip, or per-quantizer widths), PRESETS, get_recipe, and the
  `--bits/--recipe/--calibrator/--skip/--override` translation (parse_bits, parse_override, build_recipe);
- recipe_file: recipes as TOML files (`--recipe recipe.toml`, `--save-recipe`);
- layers: the quantized layers of a model by name, switching them to float and back (sensitivity, fallback);
- model: quantize_model (a quantized copy), calibrate (a caller-owned forward loop), quantization_summary;
- checkpoint: what a quantized checkpoint holds, save_quantized, and its rebuild on load;
- export: prepare_for_export (INT8 only, calibrated, weights clipped) for the ONNX / TorchScript exporters.
"""

from ...common.lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(
        ("KEPT_EXTRA", "QUANTIZATION_KEY", "QUANT_RECIPE_KEY", "rebuild_quantized", "save_quantized"),
        "dctq.calibration.quant.checkpoint",
    ),
    "prepare_for_export": "dctq.calibration.quant.export",
    **dict.fromkeys(
        ("layers_in_float", "only_layers_quantized", "quantized_layers", "to_float"),
        "dctq.calibration.quant.layers",
    ),
    **dict.fromkeys(("find_conv_bn_pairs", "fold_conv_bn"), "dctq.calibration.quant.fold"),
    **dict.fromkeys(
        (
            "QuantizerSummary",
            "calibrate",
            "clip_weights",
            "fold_quantized_bn",
            "iter_quantizers",
            "quantization_summary",
            "quantize_model",
            "recipe_of",
            "set_quant_state",
        ),
        "dctq.calibration.quant.model",
    ),
    **dict.fromkeys(
        (
            "QUANT_MODULES",
            "QuantConv2d",
            "QuantConvTranspose2d",
            "QuantLinear",
            "QuantResidualAdd",
            "as_float",
        ),
        "dctq.calibration.quant.modules",
    ),
    **dict.fromkeys(("QuantState", "TensorQuantizer"), "dctq.calibration.quant.quantizer"),
    **dict.fromkeys(
        (
            "FLOAT",
            "LayerQuant",
            "LayerRule",
            "PRESETS",
            "QuantRecipe",
            "build_recipe",
            "get_recipe",
            "parse_bits",
            "parse_override",
            "skip_rules",
        ),
        "dctq.calibration.quant.recipe",
    ),
    **dict.fromkeys(
        ("load_recipe", "recipe_from_mapping", "recipe_option", "recipe_toml", "save_recipe"),
        "dctq.calibration.quant.recipe_file",
    ),
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
