"""workflow: commands that turn a checkpoint file into another, as library calls: `dctq quantize` (FP to
quantized) and `dctq adapt-bn` (BatchNorm statistics for a deployment JPEG quality).

    quantize_checkpoint("best.pt", "q.pt", recipe=build_recipe(bits="w8a8"), calib=PtqData("cifar10"))
    adapt_bn_checkpoint("best.pt", "q30.pt", PtqData("cifar10", num_images=3000), quality=30)

plan.py: what may be asked (METHODS, PtqData, ZeroShotPlan) and the option rules (check_plan);
quantize.py: the command (quantize_checkpoint: _ptq / _zero_shot) and what it reports;
data.py: the real images PTQ draws and the synthetic files the zero-shot methods reuse;
adapt_bn.py: adapt_bn_checkpoint.
"""

from ...common.lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("AdaptResult", "adapt_bn_checkpoint"), "dctq.calibration.workflow.adapt_bn"),
    "calibration_loader": "dctq.calibration.workflow.data",
    **dict.fromkeys(("METHODS", "PtqData", "ZeroShotPlan", "check_plan"), "dctq.calibration.workflow.plan"),
    **dict.fromkeys(
        ("CalibProgress", "QuantizeEvent", "QuantizeResult", "quantize_checkpoint"),
        "dctq.calibration.workflow.quantize",
    ),
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
