"""calibration: everything that decides quantization parameters or trains a model.

    quant/        how a model is quantized: TensorQuantizer, the quantized layers, Conv+BN folding, recipes
                  (QuantRecipe, LayerRule, presets), quantize_model / calibrate, quantized checkpoints,
                  export preparation
    calibrators/  how a quantizer's range is chosen: max, percentile, entropy, mse (a registry by name)
    ptq.py        post-training quantization: ptq.ptq = quantize_model + calibrate over your batches
    zeroshot/     IntraQ and the BN-statistics baseline: synthetic images from the model alone, then
                  calibration and KD fine-tuning on them (no real image)
    qsam/         QSAM (Ma et al.): QAC loss weights, the multi-quality data, the meta stage
    train/        the training loop (FP32 and QSAM's base stage), its config, state files and data
    workflow/     `dctq quantize` and `dctq adapt-bn` as one call each: checkpoint file in, checkpoint out
    bn_stats.py   BatchNorm statistics re-estimated on other images (`dctq adapt-bn`)
    distributed.py, frozen.py  torchrun process groups; a model frozen in eval mode

Layering (docs/design.md): quant and calibrators are what deploy/ may use; the rest is never imported by
deploy/ or models/. The names below resolve on first use, so importing one light module (a quantized
checkpoint's rebuild, quant/checkpoint.py) does not import training or synthesis.
"""

from ..common.lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(
        (
            "QuantRecipe",
            "LayerRule",
            "PRESETS",
            "get_recipe",
            "build_recipe",
            "quantize_model",
            "calibrate",
            "quantization_summary",
            "fold_conv_bn",
            "save_quantized",
            "TensorQuantizer",
        ),
        "dctq.calibration.quant",
    ),
    **dict.fromkeys(("CALIBRATORS", "create_calibrator"), "dctq.calibration.calibrators"),
    **dict.fromkeys(
        ("SynthConfig", "ZeroShotConfig", "zero_shot_quantize", "distill_on_synthetic"),
        "dctq.calibration.zeroshot",
    ),
    "synthesize": "dctq.calibration.zeroshot.synthesize",
    **dict.fromkeys(("MetaConfig", "train_meta", "qac_weighted_loss"), "dctq.calibration.qsam"),
    **dict.fromkeys(("TrainConfig", "build_train_data"), "dctq.calibration.train"),
    **dict.fromkeys(
        ("quantize_checkpoint", "adapt_bn_checkpoint", "PtqData", "ZeroShotPlan", "QuantizeResult"),
        "dctq.calibration.workflow",
    ),
    "reestimate_bn": "dctq.calibration.bn_stats",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
