"""Cast the float parts of a Q/DQ ONNX graph to FP16 explicitly, for TensorRT's strongly typed networks.

TensorRT 11 builds every network strongly typed: each tensor keeps the type the graph gives it, and
the INT8/FP16 builder flags are gone. An exported Q/DQ graph is FP32 outside its INT8 convolutions,
so without this pass the stem, residual adds, pooling and the Q/DQ arithmetic would all run in FP32.
`to_fp16` rewrites a copy so that every float tensor is FP16 except where the graph must say FP32:

- Weights: `QuantizeLinear(float weight)` is computed here once, in FP32 exactly as ONNX defines it,
  and stored as an int8 initializer behind its DequantizeLinear (TensorRT's constant-INT8-weight
  form), so the integer weights stay what PyTorch computed whatever the scale's type.
- Scales: all Q/DQ scales become FP16 together, or all stay FP32 (`scales`: "auto" picks FP16 when
  every scale lies in FP16's normal range, where rounding moves it by at most 2^-11 relative). FP16
  scales need opset 19 (QuantizeLinear/DequantizeLinear take FP16 from there on); an opset-18 graph is
  bumped to 19, which changes no operator's meaning. With FP32 scales, explicit Casts surround the
  Q/DQ pairs instead.
- Constants (initializers and Constant nodes) become FP16 when every consumer takes FP16; inputs an
  operator takes only as FP32 (Resize's `scales`) stay FP32. Wherever a tensor's type differs from
  what its consumer needs, an explicit Cast is inserted: the result has no implicit conversion left.
- Inputs and outputs keep their declared types unless `fp16_inputs` / `fp16_outputs` say otherwise
  (a Cast follows an FP32 input and precedes an FP32 output). Coefficient inputs may be FP16: FP16
  holds every integer up to 2048 exactly, so every baseline coefficient and quantization step.

onnx_typing.typing_problems checks a graph for implicit conversions (operands of one type parameter
with different types, or a strict type-inference failure); tests hold converted graphs to it.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ...common.errors import BackendUnavailable, ExportError
from ...common.files import write_bytes_atomic
from .dtypes import (
    FLOAT,
    FLOAT16,
    allowed_types,
    default_opset,
    dtype_name,
    formal_type,
    inferred_types,
    schema_of,
)
from .fp16_qdq import QDQ, ConstIndex, fold_quantized_weights, resolve_scales

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Fp16Report:
    """What `to_fp16` did.

    scales: "fp16" or "fp32" (the type every Q/DQ scale has now). opset: the default-domain opset of
    the result. weights_folded: weight QuantizeLinear nodes replaced by int8 initializers.
    constants_fp16: float constants stored as FP16 now. kept_fp32: float constants left FP32 because a
    consumer takes FP32 only. casts_inserted: explicit Cast nodes added. inputs / outputs: (name,
    "float32" | "float16") of each float graph input / output.
    """

    scales: str
    opset: int
    weights_folded: int
    constants_fp16: int
    kept_fp32: tuple[str, ...]
    casts_inserted: int
    inputs: tuple[tuple[str, str], ...]
    outputs: tuple[tuple[str, str], ...]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise BackendUnavailable("the FP16 pass needs onnx: pip install 'dctq[onnx]'") from None
    return onnx


def _set_default_opset(model: Any, version: int) -> Any:
    onnx = _onnx()
    current = default_opset(model)
    if current >= version:
        return model
    if current == 18:
        # Every operator revised in opset 19 only gained types or attributes with defaults, so an
        # opset-18 node means the same at 19; the version converter is not needed (nor always able).
        for imp in model.opset_import:
            if imp.domain in ("", "ai.onnx"):
                imp.version = version
    else:
        try:
            model = onnx.version_converter.convert_version(model, version)
        except Exception as exc:  # the converter raises bare RuntimeErrors from C++
            raise ExportError(
                f"cannot move the graph from opset {current} to {version} for FP16 Q/DQ scales ({exc}); "
                "re-export with opset 18 or later, or pass scales='fp32'"
            ) from None
    model.ir_version = max(model.ir_version, 9)  # opset 19 needs IR version 9
    return model


def _wanted(node: Any, slot: int, schema: Any, scales: str) -> int:
    """The float type input `slot` of `node` should get: FP16 unless the graph must say FP32."""
    if node.op_type in QDQ and node.domain in ("", "ai.onnx"):
        if slot == 1 or (node.op_type == "QuantizeLinear" and slot == 0):
            return FLOAT16 if scales == "fp16" else FLOAT
    return FLOAT16 if "tensor(float16)" in allowed_types(schema, formal_type(schema, slot)) else FLOAT


def _original_types(model: Any) -> dict[str, int]:
    onnx = _onnx()
    try:
        return inferred_types(model)[1]
    except onnx.shape_inference.InferenceError as exc:
        raise ExportError(f"the input graph fails ONNX type inference: {str(exc)[:300]}") from None


def _fresh(used: set[str], base: str) -> str:
    name, i = base, 0
    while name in used:
        i += 1
        name = f"{base}_{i}"
    used.add(name)
    return name


def _output_type(node: Any, schema: Any, slot: int, types: dict[str, int], original: int) -> int:
    if original != FLOAT:
        return original
    if node.op_type == "DequantizeLinear":
        return types.get(node.input[1], FLOAT)
    if node.op_type == "Cast":
        return next(a.i for a in node.attribute if a.name == "to")
    param = formal_type(schema, slot, outputs=True)
    for i, name in enumerate(node.input):
        if name and formal_type(schema, i) == param and types.get(name) in (FLOAT, FLOAT16):
            return types[name]
    return original


def to_fp16(
    model: Any,
    *,
    fp16_inputs: bool | Iterable[str] = False,
    fp16_outputs: bool = False,
    scales: str = "auto",
    fold_weights: bool = True,
) -> tuple[Any, Fp16Report]:
    """A copy of `model` (onnx.ModelProto) with its float parts in FP16 (see module docstring).

    fp16_inputs: True (all float inputs), or the names of the float inputs to declare FP16; the
    others keep FP32 and are cast on entry. fp16_outputs: declare float outputs FP16 (else a Cast back
    to FP32 ends the graph). scales: "auto" | "fp16" | "fp32" for the Q/DQ scales. fold_weights:
    store quantized weights as int8 initializers.

    Raises ExportError for graphs it cannot type (control flow, custom operators, a failed type
    inference, an FP16 scale out of range) and when the result fails onnx's checker.
    """
    onnx = _onnx()
    from onnx import helper, numpy_helper

    out = copy.deepcopy(model)
    graph = out.graph
    folded = fold_quantized_weights(graph) if fold_weights else 0
    mode = resolve_scales(graph, scales)
    if mode == "fp16":
        out = _set_default_opset(out, 19)
        graph = out.graph
    opset = default_opset(out)
    original = _original_types(out)
    index = ConstIndex(graph)
    input_names = {i.name for i in graph.input}
    if fp16_inputs is True:
        as_fp16 = set(input_names)
    elif fp16_inputs is False:
        as_fp16 = set()
    else:
        as_fp16 = set(fp16_inputs)
        unknown = as_fp16 - input_names
        if unknown:
            raise ExportError(
                f"fp16_inputs names no graph input: {sorted(unknown)}; inputs: {sorted(input_names)}"
            )

    types = dict(original)
    for vi in graph.input:
        if vi.type.tensor_type.elem_type == FLOAT and vi.name in as_fp16:
            vi.type.tensor_type.elem_type = FLOAT16
            types[vi.name] = FLOAT16

    # Constants become FP16 when every consumer takes FP16.
    constants_fp16, kept = 0, []
    schemas = {id(n): schema_of(n, opset) for n in graph.node}
    for name in list(index.inits) + list(index.const_nodes):
        proto = index.tensor(name)
        if proto is None or proto.data_type != FLOAT:
            continue
        wants = {_wanted(n, s, schemas[id(n)], mode) for n, s in index.consumers.get(name, [])}
        if wants == {FLOAT16}:
            proto.CopyFrom(
                numpy_helper.from_array(numpy_helper.to_array(proto).astype(np.float16), proto.name)
            )
            types[name] = FLOAT16
            constants_fp16 += 1
        elif wants:
            kept.append(name)

    used = {n for node in graph.node for n in (*node.input, *node.output)} | input_names | set(index.inits)
    casts: dict[tuple[str, int], str] = {}
    new_nodes: list[Any] = []

    def cast(name: str, to: int) -> str:
        key = (name, to)
        if key not in casts:
            casts[key] = _fresh(used, f"{name}_{dtype_name(to)}")
            new_nodes.append(helper.make_node("Cast", [name], [casts[key]], to=to, name=f"{casts[key]}_cast"))
            types[casts[key]] = to
        return casts[key]

    for node in graph.node:
        schema = schemas[id(node)]
        for slot, name in enumerate(node.input):
            if name and types.get(name) in (FLOAT, FLOAT16):
                want = _wanted(node, slot, schema, mode)
                if types[name] != want:
                    node.input[slot] = cast(name, want)
        if node.op_type == "Cast" and original.get(node.output[0]) == FLOAT:
            for a in node.attribute:
                if a.name == "to":
                    a.i = FLOAT16
        elif node.op_type == "ConstantOfShape" and original.get(node.output[0]) == FLOAT:
            for a in node.attribute:
                if a.name == "value":
                    a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype(np.float16)))
            types[node.output[0]] = FLOAT16
        for slot, name in enumerate(node.output):
            if name and node.op_type not in ("Constant", "ConstantOfShape"):
                types[name] = _output_type(node, schema, slot, types, original.get(name, 0))
        new_nodes.append(node)

    # Outputs: a Cast to the declared type where the producer's type differs.
    for vi in graph.output:
        if original.get(vi.name) != FLOAT:
            continue
        want = FLOAT16 if fp16_outputs else FLOAT
        if types.get(vi.name) != want and vi.name not in input_names:
            inner = _fresh(used, f"{vi.name}_{dtype_name(types[vi.name])}")
            for node in new_nodes:
                node.output[:] = [inner if o == vi.name else o for o in node.output]
                node.input[:] = [inner if i == vi.name else i for i in node.input]
            new_nodes.append(helper.make_node("Cast", [inner], [vi.name], to=want, name=f"{vi.name}_cast"))
            casts[(inner, want)] = vi.name
        vi.type.tensor_type.elem_type = want

    del graph.node[:]
    graph.node.extend(new_nodes)
    del graph.value_info[:]  # stale float32 annotations; TensorRT and ORT infer them again
    _drop_unused(graph)
    try:
        onnx.checker.check_model(out, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"the FP16 pass produced an invalid graph (a dctq bug): {str(exc)[:400]}") from None
    report = Fp16Report(
        scales=mode,
        opset=opset,
        weights_folded=folded,
        constants_fp16=constants_fp16,
        kept_fp32=tuple(kept),
        casts_inserted=len(casts),
        inputs=tuple(
            (i.name, dtype_name(i.type.tensor_type.elem_type))
            for i in graph.input
            if i.type.tensor_type.elem_type in (FLOAT, FLOAT16)
        ),
        outputs=tuple(
            (o.name, dtype_name(o.type.tensor_type.elem_type))
            for o in graph.output
            if o.type.tensor_type.elem_type in (FLOAT, FLOAT16)
        ),
    )
    logger.info(
        "FP16 pass: %d weights folded to int8, %d constants to FP16, %d kept FP32, %d casts, scales %s",
        folded,
        constants_fp16,
        len(kept),
        len(casts),
        mode,
    )
    return out, report


def _drop_unused(graph: Any) -> None:
    used = {n for node in graph.node for n in node.input} | {o.name for o in graph.output}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    nodes = [n for n in graph.node if n.op_type != "Constant" or any(o in used for o in n.output)]
    del graph.node[:]
    graph.node.extend(nodes)


def convert_file(src: Path | str, dst: Path | str, **kwargs: Any) -> Fp16Report:
    """Read the ONNX file `src`, run `to_fp16(**kwargs)`, write the result to `dst` atomically.

    Raises ExportError for an unreadable `src` or the errors of `to_fp16`.
    """
    onnx = _onnx()
    src, dst = Path(src), Path(dst)
    try:
        model = onnx.load(str(src))
    except Exception as exc:  # onnx raises DecodeError, OSError, google.protobuf errors
        raise ExportError(
            f"{src}: not a readable ONNX file ({type(exc).__name__}: {exc}); re-export it"
        ) from None
    converted, report = to_fp16(model, **kwargs)
    write_bytes_atomic(dst, converted.SerializeToString())
    return report
