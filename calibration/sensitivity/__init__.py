"""sensitivity: which quantized layers cost the accuracy, and returning them to float until a drop is met.

analysis.py: held-out batches with the FP logits (`held_out`), `score` (top-1, agreement, logit SQNR) and
`layer_sensitivity` (one layer alone quantized, one layer alone in float; ranked); fallback.py: `fallback`
(`dctq quantize --max-drop`); chart.py: the ranking as a bar-chart PNG (`--sensitivity`).
"""

from ...common.lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(
        (
            "METRICS",
            "HeldOut",
            "LayerSensitivity",
            "Score",
            "SensitivityReport",
            "held_out",
            "layer_sensitivity",
            "score",
        ),
        "dctq.calibration.sensitivity.analysis",
    ),
    "sensitivity_png": "dctq.calibration.sensitivity.chart",
    **dict.fromkeys(("FallbackResult", "FallbackStep", "fallback"), "dctq.calibration.sensitivity.fallback"),
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
