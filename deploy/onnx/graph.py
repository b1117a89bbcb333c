"""A read-mostly index over an ONNX graph, shared by the Q/DQ linter and the ONNX Runtime rewrite:
who produces and who reads each tensor, and the values of constant tensors (initializers, Constant
nodes, and Identity chains over either, which the TorchScript exporter uses to dedup initializers)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from ...common.errors import BackendUnavailable


def import_onnx() -> Any:
    """The onnx module. Raises BackendUnavailable with the install command when it is missing."""
    try:
        import onnx
    except ImportError:
        raise BackendUnavailable("this needs onnx: pip install 'dctq[onnx]'") from None
    return onnx


def dtype_name(elem_type: int) -> str:
    """numpy-style name of an ONNX element type ("int8", "float8_e4m3fn", "int4"...)."""
    from onnx import TensorProto, helper

    try:
        return str(np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)))
    except (KeyError, TypeError, ValueError):
        return TensorProto.DataType.Name(elem_type).lower()


def attr_int(node: Any, name: str, default: int) -> int:
    """Integer attribute `name` of `node`, or `default` when absent."""
    for a in node.attribute:
        if a.name == name:
            return int(a.i)
    return default


class GraphIndex:
    """Producers, consumers and constants of `model.graph` as it is when built (rebuild after edits)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.graph = model.graph
        self.inits = {i.name: i for i in self.graph.initializer}
        self.const_nodes: dict[str, Any] = {}
        self.producer: dict[str, Any] = {}
        self.consumers: dict[str, list[Any]] = defaultdict(list)
        self._labels: dict[int, str] = {}
        self._values: dict[str, np.ndarray] = {}
        for i, node in enumerate(self.graph.node):
            self._labels[id(node)] = node.name or f"{node.op_type}#{i}"
            for out in node.output:
                self.producer[out] = node
            for name in node.input:
                if name:
                    self.consumers[name].append(node)
            if node.op_type == "Constant":
                for a in node.attribute:
                    if a.name == "value":
                        self.const_nodes[node.output[0]] = a.t
        self.outputs = {o.name for o in self.graph.output}
        self._names = set(self.inits) | set(self.producer)

    def label(self, node: Any) -> str:
        """The node's name, or "<op>#<index>" for unnamed nodes."""
        return self._labels.get(id(node), node.name or node.op_type)

    def source(self, name: str) -> str:
        """`name` with Identity nodes followed back to what they copy."""
        for _ in range(16):
            node = self.producer.get(name)
            if node is None or node.op_type != "Identity":
                break
            name = node.input[0]
        return name

    def const(self, name: str) -> np.ndarray | None:
        """The value of a constant tensor, else None."""
        from onnx import numpy_helper

        name = self.source(name)
        if name not in self._values:
            proto = self.inits.get(name, self.const_nodes.get(name))
            if proto is None:
                return None
            self._values[name] = numpy_helper.to_array(proto)
        return self._values[name]

    def const_type(self, name: str) -> str | None:
        """Element type name of a constant tensor, else None."""
        name = self.source(name)
        proto = self.inits.get(name, self.const_nodes.get(name))
        return None if proto is None else dtype_name(proto.data_type)

    def is_const(self, name: str) -> bool:
        name = self.source(name)
        return name in self.inits or name in self.const_nodes

    def made_by(self, name: str, op: str) -> Any | None:
        """The node producing `name` if it is an `op` node, else None."""
        node = self.producer.get(name)
        return node if node is not None and node.op_type == op else None

    def readers(self, name: str) -> list[Any]:
        return self.consumers.get(name, [])

    def fresh(self, base: str) -> str:
        """A tensor/node name not used in the graph yet, starting from `base`."""
        name, i = base, 0
        while name in self._names:
            i += 1
            name = f"{base}_{i}"
        self._names.add(name)
        return name

    def set_initializer(self, name: str, value: np.ndarray) -> str:
        """Add (or shadow) initializer `name` holding `value`; returns the name."""
        from onnx import numpy_helper

        proto = numpy_helper.from_array(np.asarray(value), name)
        self.graph.initializer.append(proto)
        self.inits[name] = proto
        self._values[name] = np.asarray(value)
        self._names.add(name)
        return name

    def replace_nodes(self, nodes: list[Any]) -> None:
        """Make `nodes` the graph's node list (in this order); the index is stale afterwards."""
        del self.graph.node[:]
        self.graph.node.extend(nodes)
