"""Q/DQ scales and FP16's range: which scale tensors of a graph can be FP16 (deploy/onnx/fp16.py's
choice, per tensor) and the floor raised under weight scales; deploy/onnx/lint.py checks the same
rule on graphs before and after the pass.

An FP16 scale is exact to 2^-11 relative inside FP16's normal range [2^-14, 65504]. Outside it, a
scale stays FP32 and its Q/DQ pair computes in FP32 behind explicit Casts, a DQ -> Cast -> Conv chain
that TensorRT may not fuse into an INT8 convolution. Weight scales below 2^-14 belong to near-zero
output channels; raising them to 2^-14 moves each such weight by at most 2^-15 and keeps the layer's
scales FP16.
"""

from __future__ import annotations

import logging

import numpy as np

from ...common.errors import ExportError
from .graph import GraphIndex

logger = logging.getLogger(__name__)

FP16_MIN_NORMAL = 2.0**-14
FP16_MAX = 65504.0
QDQ = ("QuantizeLinear", "DequantizeLinear")
SCALE_MODES = ("auto", "fp16", "fp32")


def scale_names(index: GraphIndex) -> set[str]:
    """Every Q/DQ scale tensor of the indexed graph, Identity chains followed back."""
    return {index.source(n.input[1]) for n in index.graph.node if n.op_type in QDQ and len(n.input) > 1}


def out_of_range(value: np.ndarray) -> bool:
    """Whether any magnitude in `value` lies outside FP16's normal range."""
    mag = np.abs(value.astype(np.float64))
    return bool((mag < FP16_MIN_NORMAL).any() or (mag > FP16_MAX).any())


def raise_weight_scales(index: GraphIndex) -> int:
    """Raise per-channel weight scales below FP16's smallest normal number to it, before the weights
    are folded (so their int8 values follow the raised scale). The raised scale is a new initializer
    read by the weight's QuantizeLinear and its DequantizeLinear nodes. Returns the channels raised;
    the index is stale afterwards when any was."""
    raised = 0
    for node in index.graph.node:
        if node.op_type != "QuantizeLinear" or len(node.input) < 3:
            continue
        weight, scale = index.const(node.input[0]), index.const(node.input[1])
        if weight is None or scale is None or weight.dtype != np.float32:
            continue
        low = np.abs(scale.astype(np.float64)) < FP16_MIN_NORMAL
        if not low.any():
            continue
        new = index.set_initializer(
            index.fresh(f"{index.source(node.input[1])}_fp16_floor"),
            np.where(low, np.float32(FP16_MIN_NORMAL), scale).astype(scale.dtype),
        )
        for reader in [node, *index.readers(node.output[0])]:
            if reader.op_type in QDQ:
                reader.input[1] = new
        raised += int(low.sum())
    if raised:
        logger.info("FP16 pass: raised %d weight channel scales to FP16's smallest normal number", raised)
    return raised


def resolve_scales(index: GraphIndex, scales: str) -> set[str]:
    """The constant Q/DQ scale tensors (their names, Identity chains followed back) that stay FP32;
    every other scale becomes FP16. "fp32": all of them; "fp16": none (ExportError when one lies
    outside FP16's normal range); "auto": those outside it. Raises ExportError for an unknown mode.
    """
    if scales not in SCALE_MODES:
        raise ExportError(f"scales must be one of {', '.join(SCALE_MODES)}, got {scales!r}")
    constant = {
        name: index.const(name) for name in sorted(scale_names(index)) if index.const(name) is not None
    }
    if scales == "fp32":
        return set(constant)
    bad = {name for name, value in constant.items() if out_of_range(value)}
    if bad and scales == "fp16":
        ranges = [
            f"{n} (range {np.abs(constant[n]).min():.3g}..{np.abs(constant[n]).max():.3g})"
            for n in sorted(bad)
        ]
        raise ExportError(
            f"Q/DQ scales outside FP16's normal range [{FP16_MIN_NORMAL:.3g}, {FP16_MAX:g}]: "
            f"{', '.join(ranges[:5])}; use scales='auto' (those stay FP32) or 'fp32'"
        )
    if bad:
        logger.warning(
            "FP16 pass: %d of %d scale tensors lie outside FP16's normal range and stay FP32 (%s); "
            "their Q/DQ pairs compute in FP32 behind Casts, which TensorRT may not fuse into INT8 layers",
            len(bad),
            len(constant),
            ", ".join(sorted(bad)[:5]),
        )
    return bad
