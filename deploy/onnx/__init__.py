"""deploy.onnx: graph -> graph tools over exported ONNX files, no runtime.

- graph: the shared toolkit (GraphIndex, which sees through the exporter's Identity chains;
  load_onnx, import_onnx, fold_weight_quantizers, quantize_linear, drop_unused, dtype_name, opsets).
- lint: lint_qdq checks a graph against TensorRT's explicit-quantization rules.
- ort_rewrite: rewrite_for_ort gives ONNX Runtime's x86 integer kernels the same function.
- fp16: to_fp16 / convert_file type the float parts FP16 for TensorRT's strongly typed networks.
- dtypes: operator schemas and strict type inference (typing_problems, float_types_by_op).

Importing the package does not import onnx: each function imports it when called and raises
BackendUnavailable with the install command when it is missing.
"""

from .dtypes import float_types_by_op, typing_problems
from .fp16 import Fp16Report, convert_file, to_fp16
from .graph import (
    GraphIndex,
    default_opset,
    drop_unused,
    dtype_name,
    fold_weight_quantizers,
    import_onnx,
    load_onnx,
    opset_of,
    quantize_linear,
)
from .lint import LintReport, Violation, lint_qdq
from .ort_rewrite import RewriteStats, is_qdq_model, rewrite_for_ort

__all__ = [
    "Fp16Report",
    "GraphIndex",
    "LintReport",
    "RewriteStats",
    "Violation",
    "convert_file",
    "default_opset",
    "drop_unused",
    "dtype_name",
    "float_types_by_op",
    "fold_weight_quantizers",
    "import_onnx",
    "is_qdq_model",
    "lint_qdq",
    "load_onnx",
    "opset_of",
    "quantize_linear",
    "rewrite_for_ort",
    "to_fp16",
    "typing_problems",
]
