"""What ONNX Runtime actually runs: op counts of its optimized graph, integer kernels against float ones.

Used by bench/ort_int8.py to show whether an INT8 Q/DQ graph ran QLinearConv/ConvInteger kernels or
fell back to float convolutions around Q/DQ pairs.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from dctq.deploy.backends.registry import load_runner

INTEGER_OPS = tuple(
    """QLinearConv ConvInteger QLinearAdd QLinearMatMul MatMulInteger QGemm QLinearGlobalAveragePool
    QLinearAveragePool QLinearMul QLinearConcat QLinearSigmoid QLinearLeakyRelu""".split()
)
FLOAT_CONV_OPS = ("Conv", "FusedConv", "NhwcFusedConv")
"""Float convolutions after ORT's fusions (FusedConv = Conv + activation; NCHWc Conv counts too)."""
FLOAT_GEMM_OPS = ("Gemm", "MatMul", "FusedGemm", "FusedMatMul")


def count_ops(path: Path) -> Counter[str]:
    """op_type -> count over an ONNX file's main graph (domain dropped: com.microsoft.nchwc Conv is Conv)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return Counter(node.op_type for node in model.graph.node)


def kernel_summary(ops: Counter[str]) -> dict[str, Any]:
    """Integer and float compute ops of an optimized graph, and whether integer kernels ran at all."""
    integer = {op: ops[op] for op in INTEGER_OPS if ops[op]}
    float_conv = sum(ops[op] for op in FLOAT_CONV_OPS)
    return {
        "QLinearConv": ops["QLinearConv"],
        "ConvInteger": ops["ConvInteger"],
        "QLinearAdd": ops["QLinearAdd"],
        "integer_ops": integer,
        "float_conv": float_conv,
        "float_gemm": sum(ops[op] for op in FLOAT_GEMM_OPS),
        "QuantizeLinear": ops["QuantizeLinear"],
        "DequantizeLinear": ops["DequantizeLinear"],
        "integer_kernels": bool(integer),
        "integer_conv_fraction": (ops["QLinearConv"] + ops["ConvInteger"])
        / max(1, ops["QLinearConv"] + ops["ConvInteger"] + float_conv),
    }


def optimized_ops(artifact: Any, threads: int, tmp: Path, name: str) -> Counter[str]:
    """Op counts of ORT's optimized graph, from a session the backend loads with optimized_model_path.

    A separate session, so the timed ones run exactly as `load_runner` makes them.
    """
    target = tmp / f"{name}.optimized.onnx"
    load_runner(artifact, "ort", threads=threads, optimized_model_path=target)
    return count_ops(target)
