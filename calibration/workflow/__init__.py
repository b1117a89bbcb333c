"""workflow: `dctq quantize` as a library call, from an FP checkpoint file to a quantized one.

    quantize_checkpoint("best.pt", "q.pt", recipe=build_recipe(bits="w8a8"), calib=PtqData("cifar10"))

plan.py: what may be asked (METHODS, PtqData, ZeroShotPlan) and the option rules (check_plan);
quantize.py: the command (quantize_checkpoint: _ptq / _zero_shot) and what it reports;
data.py: the real images PTQ draws and the synthetic files the zero-shot methods reuse.
"""

from .data import calibration_loader
from .plan import METHODS, PtqData, ZeroShotPlan, check_plan
from .quantize import CalibProgress, QuantizeEvent, QuantizeResult, quantize_checkpoint

__all__ = [
    "METHODS",
    "CalibProgress",
    "PtqData",
    "QuantizeEvent",
    "QuantizeResult",
    "ZeroShotPlan",
    "calibration_loader",
    "check_plan",
    "quantize_checkpoint",
]
