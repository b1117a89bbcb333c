"""deploy.onnx: graph -> graph tools over exported ONNX files, no runtime.

- graph: the shared toolkit (GraphIndex, which sees through the exporter's Identity chains;
  load_onnx, import_onnx, fold_weight_quantizers, quantize_linear, drop_unused, dtype_name, opsets).
- lint: lint_qdq checks a graph against TensorRT's explicit-quantization rules.
- ort_rewrite: rewrite_for_ort gives ONNX Runtime's x86 integer kernels the same function.
- fp16: to_fp16 / convert_file type the float parts FP16 for TensorRT's strongly typed networks.
- scales: which Q/DQ scales can be FP16 (per tensor), the floor raised under weight scales.
- dtypes: operator schemas and strict type inference (typing_problems, float_types_by_op).

Importing the package does not import onnx: each function imports it when called and raises
BackendUnavailable with the install command when it is missing.
"""

from ...common.lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("float_types_by_op", "typing_problems"), "dctq.deploy.onnx.dtypes"),
    **dict.fromkeys(("Fp16Report", "convert_file", "to_fp16"), "dctq.deploy.onnx.fp16"),
    **dict.fromkeys(
        (
            "GraphIndex",
            "default_opset",
            "drop_unused",
            "dtype_name",
            "fold_weight_quantizers",
            "import_onnx",
            "load_onnx",
            "opset_of",
            "quantize_linear",
        ),
        "dctq.deploy.onnx.graph",
    ),
    **dict.fromkeys(("LintReport", "Violation", "lint_qdq"), "dctq.deploy.onnx.lint"),
    **dict.fromkeys(("RewriteStats", "is_qdq_model", "rewrite_for_ort"), "dctq.deploy.onnx.ort_rewrite"),
    **dict.fromkeys(
        ("FP16_MAX", "FP16_MIN_NORMAL", "raise_weight_scales", "resolve_scales"), "dctq.deploy.onnx.scales"
    ),
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
