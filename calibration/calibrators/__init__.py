"""calibrators: how a quantizer's range (amax) is chosen from the values it observes (ModelOpt's calib/).

Every calibrator shares `observe / reset / compute_amax` (base.py: Calibrator, HistogramCalibrator) and is
listed by name in registry.py (CALIBRATORS, create_calibrator): max, percentile, entropy (TensorRT's
IInt8EntropyCalibrator2), mse. To add one: a file here with its class, and one line in CALIBRATORS.
"""

from .base import Calibrator, HistogramCalibrator, qmax_for
from .entropy import EntropyCalibrator
from .max import MaxCalibrator
from .mse import MseCalibrator
from .percentile import PercentileCalibrator
from .registry import (
    CALIBRATORS,
    calibrator_class,
    calibrator_options,
    check_calibrator_args,
    create_calibrator,
)

__all__ = [
    "CALIBRATORS",
    "Calibrator",
    "EntropyCalibrator",
    "HistogramCalibrator",
    "MaxCalibrator",
    "MseCalibrator",
    "PercentileCalibrator",
    "calibrator_class",
    "calibrator_options",
    "check_calibrator_args",
    "create_calibrator",
    "qmax_for",
]
