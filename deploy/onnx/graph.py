"""The ONNX graph toolkit shared by the Q/DQ linter, the ONNX Runtime rewrite and the FP16 pass.

- `import_onnx` / `load_onnx`: the one import guard and the one reader (errors name the file).
- `GraphIndex`: who produces and who reads each tensor, and the values of constant tensors
  (initializers, Constant nodes, and Identity chains over either, which the TorchScript exporter
  uses to dedup initializers); plus the edits the passes make (`fresh`, `set_initializer`,
  `replace_nodes`).
- `fold_weight_quantizers` / `quantize_linear`: QuantizeLinear of a constant float32 weight computed
  once, exactly as ONNX defines it, into an int8 initializer.
- `drop_unused`: the clean-up after a pass (dead initializers, Constant/Identity nodes, stale types).
- `dtype_name`, `opset_of` / `default_opset`, `attr_int`: small lookups.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ...common.errors import BackendUnavailable, ExportError

_MAX_CHAIN = 16  # Identity hops followed; exporters emit one, a cycle cannot occur in a valid graph
_SUBGRAPH_ATTRIBUTES = (5, 10)  # AttributeProto.GRAPH / GRAPHS


def import_onnx(needed_by: str = "this", requires: str = "onnx") -> Any:
    """The onnx module. Raises BackendUnavailable ("<needed_by> needs <requires>: pip install ...")
    when it is missing."""
    try:
        import onnx
    except ImportError:
        raise BackendUnavailable(f"{needed_by} needs {requires}: pip install 'dctq[onnx]'") from None
    return onnx


def load_onnx(path: Path | str, *, external_data: bool = True, data: bytes | None = None) -> Any:
    """The onnx.ModelProto in the file `path` (or in `data`, the bytes already read from it).

    external_data: also load tensors stored beside the file. Raises ExportError naming `path` when
    the file is missing or is not a readable ONNX model, BackendUnavailable without onnx.
    """
    onnx = import_onnx()
    path = Path(path)
    if data is None and not path.is_file():
        raise ExportError(f"ONNX file not found: {path}")
    try:
        if data is not None:
            return onnx.load_model_from_string(data)
        return onnx.load(str(path), load_external_data=external_data)
    except Exception as exc:  # protobuf's DecodeError, OSError, onnx's own errors: no common base
        raise ExportError(
            f"{path} is not a readable ONNX model ({type(exc).__name__}: {exc}); re-export it"
        ) from None


def dtype_name(elem_type: int) -> str:
    """numpy-style name of an ONNX element type ("float32", "float16", "int8", "float8_e4m3fn", "int4"...)."""
    from onnx import TensorProto, helper

    try:
        return str(np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)))
    except (KeyError, TypeError, ValueError):
        return TensorProto.DataType.Name(elem_type).lower()


def opset_of(model: Any) -> int | None:
    """The default-domain (ai.onnx) opset `model` imports, or None when it imports none."""
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return None


def default_opset(model: Any) -> int:
    """The default-domain opset of `model`. Raises ExportError when it imports none."""
    opset = opset_of(model)
    if opset is None:
        raise ExportError("the ONNX model imports no default-domain opset; re-export it")
    return opset


def attr_int(node: Any, name: str, default: int) -> int:
    """Integer attribute `name` of `node`, or `default` when absent."""
    for a in node.attribute:
        if a.name == name:
            return int(a.i)
    return default


def holds_subgraph(node: Any) -> bool:
    """Whether `node` has a graph attribute (If/Loop/Scan bodies)."""
    return any(a.type in _SUBGRAPH_ATTRIBUTES for a in node.attribute)


def subgraph_nodes(graph: Any) -> list[Any]:
    """The nodes of every subgraph below `graph`'s nodes, recursively."""
    found = []
    for node in graph.node:
        for a in node.attribute:
            if a.type in _SUBGRAPH_ATTRIBUTES:
                for sub in [a.g] if a.type == _SUBGRAPH_ATTRIBUTES[0] else list(a.graphs):
                    found.extend(sub.node)
                    found.extend(subgraph_nodes(sub))
    return found


class GraphIndex:
    """Producers, consumers and constants of `model.graph` as it is when built (rebuild after edits).

    Every lookup by tensor name follows Identity chains back to what they copy (`source`), so a
    constant reached through the TorchScript exporter's dedup Identity is a constant everywhere.
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        self.graph = model.graph
        self.inits = {i.name: i for i in self.graph.initializer}  # the last of same-named ones is live
        self.const_nodes: dict[str, Any] = {}  # Constant output -> its value TensorProto
        self.producer: dict[str, Any] = {}
        self.consumers: dict[str, list[tuple[Any, int]]] = defaultdict(list)  # name -> (node, slot)
        self._labels: dict[int, str] = {}
        self._values: dict[str, np.ndarray] = {}
        for i, node in enumerate(self.graph.node):
            self._labels[id(node)] = node.name or f"{node.op_type}#{i}"
            for out in node.output:
                self.producer[out] = node
            for slot, name in enumerate(node.input):
                if name:
                    self.consumers[name].append((node, slot))
            if node.op_type == "Constant":
                for a in node.attribute:
                    if a.name == "value":
                        self.const_nodes[node.output[0]] = a.t
        self.outputs = {o.name for o in self.graph.output}
        self._names = (
            set(self.inits)
            | set(self.producer)
            | set(self.consumers)
            | self.outputs
            | {i.name for i in self.graph.input}
        )

    def label(self, node: Any) -> str:
        """The node's name, or "<op>#<index>" for unnamed nodes."""
        return self._labels.get(id(node), node.name or node.op_type)

    def source(self, name: str) -> str:
        """`name` with Identity nodes followed back to what they copy."""
        for _ in range(_MAX_CHAIN):
            node = self.producer.get(name)
            if node is None or node.op_type != "Identity":
                break
            name = node.input[0]
        return name

    def tensor(self, name: str) -> Any | None:
        """The TensorProto holding constant `name` (an initializer or a Constant's value), else None."""
        name = self.source(name)
        return self.inits.get(name, self.const_nodes.get(name))

    def const(self, name: str) -> np.ndarray | None:
        """The value of a constant tensor, else None."""
        from onnx import numpy_helper

        name = self.source(name)
        if name not in self._values:
            proto = self.tensor(name)
            if proto is None:
                return None
            self._values[name] = numpy_helper.to_array(proto)
        return self._values[name]

    def const_type(self, name: str) -> str | None:
        """Element type name of a constant tensor, else None."""
        proto = self.tensor(name)
        return None if proto is None else dtype_name(proto.data_type)

    def is_const(self, name: str) -> bool:
        return self.tensor(name) is not None

    def made_by(self, name: str, op: str) -> Any | None:
        """The node producing `name` if it is an `op` node, else None."""
        node = self.producer.get(name)
        return node if node is not None and node.op_type == op else None

    def readers(self, name: str) -> list[Any]:
        """The nodes reading `name` directly (a node reading it twice appears twice)."""
        return [node for node, _ in self.consumers.get(name, [])]

    def uses(self, name: str) -> list[tuple[Any, int]]:
        """(node, input slot) of every read of `name`, with Identity readers replaced by the reads
        of their outputs: the inputs that take `name`'s value in the end."""
        found: list[tuple[Any, int]] = []
        todo, depth = [name], 0
        while todo and depth <= _MAX_CHAIN:
            nxt = []
            for tensor in todo:
                for node, slot in self.consumers.get(tensor, []):
                    if node.op_type == "Identity":
                        nxt.append(node.output[0])
                    else:
                        found.append((node, slot))
            todo, depth = nxt, depth + 1
        return found

    def fresh(self, base: str) -> str:
        """A tensor/node name not used in the graph yet, starting from `base` (then base_1, base_2...)."""
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


def quantize_linear(x: np.ndarray, scale: np.ndarray, zero: np.ndarray, axis: int) -> np.ndarray:
    """ONNX QuantizeLinear in numpy: saturate(round_half_even(x / scale) + zero), dtype of `zero`.

    x: float32 array; scale/zero: scalars or 1-D along `axis` (per-channel).
    """
    x = np.asarray(x, dtype=np.float32)
    scale = np.asarray(scale, dtype=np.float32)
    zero = np.asarray(zero)
    if scale.size > 1:
        shape = [1] * x.ndim
        shape[axis % x.ndim] = -1
        scale, offset = scale.reshape(shape), zero.reshape(shape).astype(np.float32)
    else:
        scale, offset = scale.reshape(()), zero.reshape(()).astype(np.float32)
    info = np.iinfo(zero.dtype)
    return np.clip(np.rint(x / scale) + offset, info.min, info.max).astype(zero.dtype)


def fold_weight_quantizers(index: GraphIndex) -> int:
    """QuantizeLinear(constant float32 weight) -> its integer result as an initializer named like the
    Q output, computed in FP32 exactly as ONNX defines it. Returns how many were folded; the index is
    stale afterwards when any was. Constants reached through Identity chains count."""
    keep, folded = [], 0
    for node in index.graph.node:
        if node.op_type == "QuantizeLinear" and len(node.input) >= 3:
            x, scale, zero = (index.const(n) for n in node.input[:3])
            if x is not None and scale is not None and zero is not None and x.dtype == np.float32:
                q = quantize_linear(x, scale, zero, attr_int(node, "axis", 1))
                index.set_initializer(node.output[0], q)
                folded += 1
                continue
        keep.append(node)
    if folded:
        index.replace_nodes(keep)
    return folded


def _names_read(graph: Any) -> set[str]:
    """Tensor names read by any node (subgraph nodes included: they may read outer names) or output."""
    nodes = [*graph.node, *subgraph_nodes(graph)]
    return {name for node in nodes for name in node.input if name} | {o.name for o in graph.output}


def drop_unused(model_or_graph: Any) -> None:
    """Remove, in place, what no node or graph output reads any more after a pass.

    Constant and Identity nodes whose outputs nothing reads (repeatedly, so whole dedup chains go),
    initializers nothing reads (and shadowed ones: of same-named initializers the last is the live
    one), and value_info of tensors no longer produced. Other nodes are left alone.
    """
    graph = getattr(model_or_graph, "graph", model_or_graph)
    while True:
        read = _names_read(graph)
        nodes = [
            n
            for n in graph.node
            if n.op_type not in ("Constant", "Identity") or any(o in read for o in n.output)
        ]
        if len(nodes) == len(graph.node):
            break
        del graph.node[:]
        graph.node.extend(nodes)
    seen: set[str] = set()
    keep = []
    for init in reversed(graph.initializer):
        if init.name in read and init.name not in seen:
            keep.append(init)
            seen.add(init.name)
    if len(keep) != len(graph.initializer):
        del graph.initializer[:]
        graph.initializer.extend(reversed(keep))
    produced = {o for node in graph.node for o in node.output} | seen
    infos = [v for v in graph.value_info if v.name in produced]
    if len(infos) != len(graph.value_info):
        del graph.value_info[:]
        graph.value_info.extend(infos)
