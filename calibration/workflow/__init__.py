"""workflow: `dctq quantize` as a library call, from an FP checkpoint file to a quantized one.

    quantize_checkpoint("best.pt", "q.pt", recipe=build_recipe(bits="w8a8"), calib=PtqData("cifar10"))

plan.py: what may be asked (METHODS, PtqData, ZeroShotPlan) and the option rules (check_plan);
quantize.py: the command (quantize_checkpoint: _ptq / _zero_shot) and what it reports;
data.py: the real images PTQ draws and the synthetic files the zero-shot methods reuse.
"""

from ...common.lazy import lazy_exports

_EXPORTS = {
    "calibration_loader": "dctq.calibration.workflow.data",
    **dict.fromkeys(("METHODS", "PtqData", "ZeroShotPlan", "check_plan"), "dctq.calibration.workflow.plan"),
    **dict.fromkeys(
        ("CalibProgress", "QuantizeEvent", "QuantizeResult", "quantize_checkpoint"),
        "dctq.calibration.workflow.quantize",
    ),
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
