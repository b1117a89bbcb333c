"""Element types of ONNX graphs: operator schemas, strict type inference, implicit-conversion checks.

Shared by the FP16 pass (fp16.py) and its tests: `typing_problems` lists what a strongly typed
TensorRT network would refuse (operands of one type parameter with different element types, or a
graph onnx's strict type inference rejects); `float_types_by_op` summarises which float types each
operator computes in.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from ...common.errors import ExportError
from .graph import default_opset, dtype_name, import_onnx

FLOAT, FLOAT16 = 1, 10  # onnx.TensorProto.FLOAT / FLOAT16


def schema_of(node: Any, opset: int) -> Any:
    onnx = import_onnx()
    try:
        return onnx.defs.get_schema(node.op_type, opset, node.domain or "")
    except onnx.defs.SchemaError:
        raise ExportError(
            f"node {node.name or node.op_type}: no schema for {node.domain or 'ai.onnx'}::{node.op_type} at "
            f"opset {opset}; the FP16 pass handles standard ONNX operators only"
        ) from None


def formal_type(schema: Any, slot: int, outputs: bool = False) -> str | None:
    params = schema.outputs if outputs else schema.inputs
    if slot < len(params):
        return params[slot].type_str
    variadic = import_onnx().defs.OpSchema.FormalParameterOption.Variadic
    if params and params[-1].option == variadic:
        return params[-1].type_str
    return None


def allowed_types(schema: Any, type_str: str | None) -> set[str]:
    if type_str is None:
        return set()
    for tc in schema.type_constraints:
        if tc.type_param_str == type_str:
            return set(tc.allowed_type_strs)
    return {type_str}


def inferred_types(model: Any) -> tuple[Any, dict[str, int]]:
    """(graph after strict type inference, {tensor name: element type}). Raises InferenceError."""
    onnx = import_onnx()
    g = onnx.shape_inference.infer_shapes(model, strict_mode=True).graph
    types = {i.name: i.data_type for i in g.initializer}
    for vi in [*g.input, *g.value_info, *g.output]:
        types[vi.name] = vi.type.tensor_type.elem_type
    for n in g.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            types[n.output[0]] = n.attribute[0].t.data_type
    return g, types


def typing_problems(model: Any) -> list[str]:
    """Implicit type conversions a strongly typed network would refuse, one message each (empty = none).

    Checks that onnx's strict type inference passes and that, for every node, all inputs and outputs
    bound to one type parameter of its schema share one element type.
    """
    onnx = import_onnx()
    try:
        g, types = inferred_types(model)
    except onnx.shape_inference.InferenceError as exc:
        return [f"type inference fails: {str(exc)[:300]}"]
    opset = default_opset(model)
    problems = []
    for node in g.node:
        schema = schema_of(node, opset)
        bound: dict[str, set[int]] = defaultdict(set)
        for outputs, names in ((False, node.input), (True, node.output)):
            for slot, name in enumerate(names):
                param = formal_type(schema, slot, outputs)
                if name and param and name in types and not param.startswith("tensor("):
                    bound[param].add(types[name])
        for param, seen in bound.items():
            if len(seen) > 1:
                kinds = ", ".join(sorted(dtype_name(t) for t in seen))
                problems.append(f"{node.op_type} {node.name or node.output[0]}: {param} bound to {kinds}")
    return problems


def float_types_by_op(model: Any) -> dict[str, set[str]]:
    """{op_type: element types of its float inputs} over the graph (after strict type inference);
    shows, for instance, that every Conv/Gemm computes in one float type."""
    g, types = inferred_types(model)
    seen: dict[str, set[str]] = defaultdict(set)
    for node in g.node:
        for name in node.input:
            if name and types.get(name) in (FLOAT, FLOAT16):
                seen[node.op_type].add(dtype_name(types[name]))
    return dict(seen)
