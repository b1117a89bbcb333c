"""calibrators: how a quantizer's range (amax) is chosen from the values it observes (ModelOpt's calib/).

Every calibrator shares `observe / reset / compute_amax` (base.py: Calibrator, HistogramCalibrator) and is
listed by name in registry.py (CALIBRATORS, create_calibrator): max, percentile, entropy (TensorRT's
IInt8EntropyCalibrator2), mse. statistics.py keeps what one pass observed (max, sign, |x| histogram) so
that any of them can derive its range later (`load_statistics`; calibration caches). To add one: a file here with its class, and one line in CALIBRATORS.
"""

from ...common.lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("Calibrator", "HistogramCalibrator", "qmax_for"), "dctq.calibration.calibrators.base"),
    "EntropyCalibrator": "dctq.calibration.calibrators.entropy",
    "MaxCalibrator": "dctq.calibration.calibrators.max",
    "MseCalibrator": "dctq.calibration.calibrators.mse",
    "PercentileCalibrator": "dctq.calibration.calibrators.percentile",
    **dict.fromkeys(
        ("ActivationStatistics", "StatisticsCalibrator"), "dctq.calibration.calibrators.statistics"
    ),
    **dict.fromkeys(
        (
            "CALIBRATORS",
            "calibrator_class",
            "calibrator_options",
            "check_calibrator_args",
            "create_calibrator",
        ),
        "dctq.calibration.calibrators.registry",
    ),
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
