"""The Q/DQ steps of the FP16 pass (trt_fp16.py), run before any type changes: folding each weight
QuantizeLinear into an int8 initializer, and choosing FP16 or FP32 for every Q/DQ scale; with
`ConstIndex`, the graph's constant tensors and the consumers of each tensor.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

import numpy as np

from ...common.errors import ExportError

logger = logging.getLogger(__name__)

FP16_MIN_NORMAL = 2.0**-14
FP16_MAX = 65504.0
QDQ = ("QuantizeLinear", "DequantizeLinear")
SCALE_MODES = ("auto", "fp16", "fp32")


class ConstIndex:
    """Constants, producers and consumers of a graph (rebuilt after each structural change)."""

    def __init__(self, graph: Any) -> None:
        from onnx import numpy_helper

        self.graph = graph
        self.inits = {i.name: i for i in graph.initializer}
        self.const_nodes = {
            n.output[0]: n
            for n in graph.node
            if n.op_type == "Constant" and len(n.attribute) == 1 and n.attribute[0].name == "value"
        }
        self.consumers: dict[str, list[tuple[Any, int]]] = defaultdict(list)
        for node in graph.node:
            if any(a.type in (5, 10) for a in node.attribute):  # GRAPH / GRAPHS attributes
                raise ExportError(
                    f"node {node.name or node.op_type} ({node.op_type}) holds a subgraph; the FP16 pass "
                    "handles graphs without control flow only"
                )
            for slot, name in enumerate(node.input):
                if name:
                    self.consumers[name].append((node, slot))
        self._np = numpy_helper

    def array(self, name: str) -> np.ndarray | None:
        if name in self.inits:
            return self._np.to_array(self.inits[name])
        node = self.const_nodes.get(name)
        return None if node is None else self._np.to_array(node.attribute[0].t)

    def tensor(self, name: str) -> Any:
        """The TensorProto holding constant `name` (initializer or Constant's value), else None."""
        if name in self.inits:
            return self.inits[name]
        node = self.const_nodes.get(name)
        return None if node is None else node.attribute[0].t


def fold_quantized_weights(graph: Any) -> int:
    """QuantizeLinear(constant float32) -> int8 initializer named like the Q output."""
    from onnx import numpy_helper

    from .graph import quantize_linear

    index = ConstIndex(graph)
    keep, folded = [], 0
    for node in graph.node:
        if node.op_type == "QuantizeLinear" and len(node.input) >= 3:
            x, scale, zero = (index.array(n) for n in node.input[:3])
            if x is not None and scale is not None and zero is not None and x.dtype == np.float32:
                axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
                q = quantize_linear(x, scale.astype(np.float32), zero, axis)
                graph.initializer.append(numpy_helper.from_array(q, node.output[0]))
                folded += 1
                continue
        keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)
    return folded


def _scale_names(graph: Any) -> list[str]:
    return [n.input[1] for n in graph.node if n.op_type in QDQ and len(n.input) > 1]


def resolve_scales(graph: Any, scales: str) -> str:
    """The type every Q/DQ scale gets, "fp16" or "fp32": `scales` itself, or for "auto" FP16 when
    every constant scale lies in FP16's normal range. Raises ExportError for an unknown mode, and
    for "fp16" with a scale outside that range.
    """
    if scales not in SCALE_MODES:
        raise ExportError(f"scales must be one of {', '.join(SCALE_MODES)}, got {scales!r}")
    if scales == "fp32":
        return scales
    index = ConstIndex(graph)
    bad = []
    for name in dict.fromkeys(_scale_names(graph)):
        value = index.array(name)
        if value is None:
            continue  # a computed scale is cast like any other tensor
        mag = np.abs(value.astype(np.float64))
        if (mag < FP16_MIN_NORMAL).any() or (mag > FP16_MAX).any():
            bad.append(f"{name} (range {mag.min():.3g}..{mag.max():.3g})")
    if not bad:
        return "fp16"
    if scales == "fp16":
        raise ExportError(
            f"Q/DQ scales outside FP16's normal range [{FP16_MIN_NORMAL:.3g}, {FP16_MAX:g}]: "
            f"{', '.join(bad[:5])}; use scales='fp32' (or 'auto')"
        )
    logger.info("FP16 pass: %d scale tensors outside FP16's normal range, keeping all scales FP32", len(bad))
    return "fp32"
