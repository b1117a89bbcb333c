"""compare: two artifacts of one model on the same inputs (`dctq compare A B`), output by output against
tolerances (a CI gate) and layer by layer (PyTorch forward hooks, ONNX graphs with their module outputs
marked), worst first.

metrics.py: Tolerances, TensorComparison, the batch-wise Accumulator; taps.py: TorchTap, OnnxTap and the
layer keys that line a float model up with its folded/quantized forms; run.py: compare_artifacts.
"""

from ...common.lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("Accumulator", "TensorComparison", "Tolerances"), "dctq.deploy.compare.metrics"),
    **dict.fromkeys(("CompareReport", "compare_artifacts", "comparison_inputs"), "dctq.deploy.compare.run"),
    **dict.fromkeys(
        ("OnnxTap", "TorchTap", "layer_names", "onnx_module_outputs"), "dctq.deploy.compare.taps"
    ),
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
