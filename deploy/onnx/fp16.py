"""Cast the float parts of a Q/DQ ONNX graph to FP16 explicitly, for TensorRT's strongly typed networks.

TensorRT 11 builds every network strongly typed: each tensor keeps the type the graph gives it, and
the INT8/FP16 builder flags are gone. An exported Q/DQ graph is FP32 outside its INT8 convolutions,
so without this pass the stem, residual adds, pooling and the Q/DQ arithmetic would all run in FP32.
`to_fp16` rewrites a copy so that every float tensor is FP16 except where the graph must say FP32:

- Weights: `QuantizeLinear(float weight)` is computed here once, in FP32 exactly as ONNX defines it,
  and stored as an int8 initializer behind its DequantizeLinear (TensorRT's constant-INT8-weight
  form), so the integer weights stay what PyTorch computed whatever the scale's type.
- Scales: each Q/DQ scale tensor becomes FP16 where it lies in FP16's normal range (rounding moves it
  by at most 2^-11 relative) and stays FP32 where it does not (`scales="auto"`), so one odd tensor
  does not switch the whole graph to FP32 scales. A weight scale below FP16's smallest normal number
  (a near-zero output channel) is raised to it first and the channel's int8 weights computed with the
  raised scale: the channel moves by at most half of that step (2^-15), and its convolution keeps
  FP16 scales. An FP32 scale makes its pair compute in FP32 with explicit Casts around it
  (DQ -> Cast -> Conv), a form TensorRT may not fuse into an INT8 layer: `dctq check` warns about
  it (deploy/onnx/lint.py, rules fp16-scale and dq-cast). FP16 scales need opset 19
  (QuantizeLinear/DequantizeLinear take FP16 from there on); an opset-18 graph is bumped to 19,
  which changes no operator's meaning. `scales="fp16"` / `"fp32"` force one type for all.
- Constants (initializers and Constant nodes) become FP16 when every consumer takes FP16; inputs an
  operator takes only as FP32 (Resize's `scales`) stay FP32. Wherever a tensor's type differs from
  what its consumer needs, an explicit Cast is inserted: the result has no implicit conversion left.
- Identity chains over a constant (the TorchScript exporter's dedup of equal initializers) are seen
  through, as in every pass built on graph.GraphIndex: such a weight is folded, such a scale is
  range-checked, and a constant's type is chosen for the inputs it reaches at the chain's end.
- Inputs and outputs keep their declared types unless `fp16_inputs` / `fp16_outputs` say otherwise
  (a Cast follows an FP32 input and precedes an FP32 output). Coefficient inputs may be FP16: FP16
  holds every integer up to 2048 exactly, so every baseline coefficient and quantization step.

dtypes.typing_problems checks a graph for implicit conversions (operands of one type parameter
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

from ...common.errors import ExportError
from ...common.files import write_bytes_atomic
from .dtypes import FLOAT, FLOAT16, allowed_types, formal_type, inferred_types, schema_of
from .graph import (
    GraphIndex,
    default_opset,
    drop_unused,
    dtype_name,
    fold_weight_quantizers,
    holds_subgraph,
    import_onnx,
    load_onnx,
)
from .scales import QDQ, raise_weight_scales, resolve_scales, scale_names

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Fp16Report:
    """What `to_fp16` did.

    scales: "fp16" or "fp32" when every Q/DQ scale has that type now, "mixed" when some stay FP32.
    scales_fp32: the scale tensors left FP32 (outside FP16's range). weight_scales_raised: weight
    channels whose scale was raised to FP16's smallest normal number. opset: the default-domain opset of
    the result. weights_folded: weight QuantizeLinear nodes replaced by int8 initializers.
    constants_fp16: float constants stored as FP16 now. kept_fp32: float constants left FP32 because a
    consumer (at the end of any Identity chain) takes FP32 only. casts_inserted: explicit Cast nodes added. inputs / outputs: (name,
    "float32" | "float16") of each float graph input / output.
    """

    scales: str
    scales_fp32: tuple[str, ...]
    weight_scales_raised: int
    opset: int
    weights_folded: int
    constants_fp16: int
    kept_fp32: tuple[str, ...]
    casts_inserted: int
    inputs: tuple[tuple[str, str], ...]
    outputs: tuple[tuple[str, str], ...]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _set_default_opset(model: Any, version: int) -> Any:
    onnx = import_onnx("the FP16 pass")
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


def _wanted(node: Any, slot: int, schema: Any, r: _Retyping) -> int:
    """The float type input `slot` of `node` should get: FP16 unless the graph must say FP32."""
    if node.op_type in QDQ and node.domain in ("", "ai.onnx"):
        if slot == 1 or (node.op_type == "QuantizeLinear" and slot == 0):
            return FLOAT if r.scale_fp32(node) else FLOAT16
    return FLOAT16 if "tensor(float16)" in allowed_types(schema, formal_type(schema, slot)) else FLOAT


def _original_types(model: Any) -> dict[str, int]:
    onnx = import_onnx("the FP16 pass")
    try:
        return inferred_types(model)[1]
    except onnx.shape_inference.InferenceError as exc:
        raise ExportError(f"the input graph fails ONNX type inference: {str(exc)[:300]}") from None


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


@dataclasses.dataclass
class _Retyping:
    """What the phases of `to_fp16` share once the Q/DQ steps are done: the graph's index, the scale
    tensors that stay FP32, each tensor's element type before (`original`) and so far (`types`),
    each node's schema, the Casts added (by (tensor, type)) and the node list being built."""

    index: GraphIndex
    fp32_scales: set[str]
    all_fp32: bool
    original: dict[str, int]
    types: dict[str, int]
    schemas: dict[int, Any] = dataclasses.field(default_factory=dict)
    casts: dict[tuple[str, int], str] = dataclasses.field(default_factory=dict)
    nodes: list[Any] = dataclasses.field(default_factory=list)
    scales_all_fp32: bool = False

    def scale_fp32(self, node: Any) -> bool:
        """Whether the scale of Q/DQ `node` is (or is cast to) FP32; computed scales follow `all_fp32`."""
        name = self.index.source(node.input[1])
        return name in self.fp32_scales or (self.all_fp32 and not self.index.is_const(name))

    def cast(self, name: str, to: int) -> str:
        """Tensor `name` as element type `to`: the output of a Cast, added the first time it is asked for."""
        from onnx import helper

        key = (name, to)
        if key not in self.casts:
            cast = self.index.fresh(f"{name}_{dtype_name(to)}")
            self.nodes.append(helper.make_node("Cast", [name], [cast], to=to, name=f"{cast}_cast"))
            self.casts[key] = cast
            self.types[cast] = to
        return self.casts[key]


def _refuse_subgraphs(graph: Any) -> None:
    for node in graph.node:
        if holds_subgraph(node):
            raise ExportError(
                f"node {node.name or node.op_type} ({node.op_type}) holds a subgraph; the FP16 pass "
                "handles graphs without control flow only"
            )


def _fp16_input_names(graph: Any, fp16_inputs: bool | Iterable[str]) -> set[str]:
    input_names = {i.name for i in graph.input}
    if fp16_inputs is True:
        return input_names
    if fp16_inputs is False:
        return set()
    as_fp16 = set(fp16_inputs)
    unknown = as_fp16 - input_names
    if unknown:
        raise ExportError(
            f"fp16_inputs names no graph input: {sorted(unknown)}; inputs: {sorted(input_names)}"
        )
    return as_fp16


def _retype_inputs(r: _Retyping, as_fp16: set[str]) -> None:
    """Declare the float graph inputs named in `as_fp16` FP16."""
    for vi in r.index.graph.input:
        if vi.type.tensor_type.elem_type == FLOAT and vi.name in as_fp16:
            vi.type.tensor_type.elem_type = FLOAT16
            r.types[vi.name] = FLOAT16


def _constants_to_fp16(r: _Retyping) -> tuple[int, list[str]]:
    """Store a float constant as FP16 when every input it ends up in (through Identity chains) takes
    FP16. Returns (constants converted, names of those kept FP32 for an FP32-only input)."""
    from onnx import numpy_helper

    converted, kept = 0, []
    for name in list(r.index.inits) + list(r.index.const_nodes):
        proto = r.index.tensor(name)
        if proto is None or proto.data_type != FLOAT:
            continue
        wants = {_wanted(n, s, r.schemas[id(n)], r) for n, s in r.index.uses(name)}
        if wants == {FLOAT16}:
            proto.CopyFrom(
                numpy_helper.from_array(numpy_helper.to_array(proto).astype(np.float16), proto.name)
            )
            r.types[name] = FLOAT16
            converted += 1
        elif wants:
            kept.append(name)
    return converted, kept


def _insert_casts(r: _Retyping) -> None:
    """Walk the nodes in order: cast each float input to the type its slot needs, retarget float
    Casts and ConstantOfShape values to FP16, and record each output's resulting type."""
    from onnx import numpy_helper

    for node in r.index.graph.node:
        schema = r.schemas[id(node)]
        for slot, name in enumerate(node.input):
            if node.op_type == "Identity" and r.index.is_const(name):
                continue  # a dedup copy takes its constant's type (chosen for where it ends up)
            if name and r.types.get(name) in (FLOAT, FLOAT16):
                want = _wanted(node, slot, schema, r)
                if r.types[name] != want:
                    node.input[slot] = r.cast(name, want)
        if node.op_type == "Cast" and r.original.get(node.output[0]) == FLOAT:
            for a in node.attribute:
                if a.name == "to":
                    a.i = FLOAT16
        elif node.op_type == "ConstantOfShape" and r.original.get(node.output[0]) == FLOAT:
            for a in node.attribute:
                if a.name == "value":
                    a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype(np.float16)))
            r.types[node.output[0]] = FLOAT16
        for slot, name in enumerate(node.output):
            if name and node.op_type not in ("Constant", "ConstantOfShape"):
                r.types[name] = _output_type(node, schema, slot, r.types, r.original.get(name, 0))
        r.nodes.append(node)


def _cast_outputs(r: _Retyping, fp16_outputs: bool) -> None:
    """Declare each float graph output FP16 or FP32, with a Cast before it where its producer's type differs."""
    from onnx import helper

    input_names = {i.name for i in r.index.graph.input}
    for vi in r.index.graph.output:
        if r.original.get(vi.name) != FLOAT:
            continue
        want = FLOAT16 if fp16_outputs else FLOAT
        if r.types.get(vi.name) != want and vi.name not in input_names:
            inner = r.index.fresh(f"{vi.name}_{dtype_name(r.types[vi.name])}")
            for node in r.nodes:
                node.output[:] = [inner if o == vi.name else o for o in node.output]
                node.input[:] = [inner if i == vi.name else i for i in node.input]
            r.nodes.append(helper.make_node("Cast", [inner], [vi.name], to=want, name=f"{vi.name}_cast"))
            r.casts[(inner, want)] = vi.name
        vi.type.tensor_type.elem_type = want


def _float_io(values: Any) -> tuple[tuple[str, str], ...]:
    return tuple(
        (v.name, dtype_name(v.type.tensor_type.elem_type))
        for v in values
        if v.type.tensor_type.elem_type in (FLOAT, FLOAT16)
    )


def _report(
    model: Any, r: _Retyping, opset: int, folded: int, raised: int, converted: int, kept: list[str]
) -> Fp16Report:
    fp32 = tuple(sorted(r.fp32_scales))
    mode = "fp32" if r.all_fp32 or r.scales_all_fp32 else ("mixed" if fp32 else "fp16")
    report = Fp16Report(
        scales=mode,
        scales_fp32=fp32,
        weight_scales_raised=raised,
        opset=opset,
        weights_folded=folded,
        constants_fp16=converted,
        kept_fp32=tuple(kept),
        casts_inserted=len(r.casts),
        inputs=_float_io(model.graph.input),
        outputs=_float_io(model.graph.output),
    )
    logger.info(
        "FP16 pass: %d weights folded to int8, %d constants to FP16, %d kept FP32, %d casts, scales %s",
        folded,
        converted,
        len(kept),
        len(r.casts),
        mode,
    )
    return report


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
    to FP32 ends the graph). scales: "auto" (FP16 per scale tensor where it fits, weight scales
    raised into FP16's range) | "fp16" | "fp32" for the Q/DQ scales. fold_weights: store quantized
    weights as int8 initializers.

    Raises ExportError for graphs it cannot type (control flow, custom operators, a failed type
    inference, an FP16 scale out of range) and when the result fails onnx's checker.
    """
    onnx = import_onnx("the FP16 pass")
    _refuse_subgraphs(model.graph)
    out = copy.deepcopy(model)
    # The Q/DQ steps come first, before any type changes.
    raised = raise_weight_scales(GraphIndex(out)) if scales != "fp32" else 0
    folded = fold_weight_quantizers(GraphIndex(out)) if fold_weights else 0
    drop_unused(out)  # now, or the node walk would cast the folded weights' dead Identity chains
    index = GraphIndex(out)
    fp32_scales = resolve_scales(index, scales)
    names = scale_names(index)
    every_scale_fp32 = scales == "fp32" or bool(names and names <= fp32_scales)
    if not every_scale_fp32:
        out = _set_default_opset(out, 19)
    opset = default_opset(out)
    original = _original_types(out)
    as_fp16 = _fp16_input_names(out.graph, fp16_inputs)
    r = _Retyping(GraphIndex(out), fp32_scales, scales == "fp32", original, dict(original))
    r.scales_all_fp32 = every_scale_fp32
    _retype_inputs(r, as_fp16)
    r.schemas = {id(n): schema_of(n, opset) for n in out.graph.node}
    converted, kept = _constants_to_fp16(r)
    _insert_casts(r)
    _cast_outputs(r, fp16_outputs)
    r.index.replace_nodes(r.nodes)
    del out.graph.value_info[:]  # stale float32 annotations; TensorRT and ORT infer them again
    drop_unused(out)
    try:
        onnx.checker.check_model(out, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"the FP16 pass produced an invalid graph (a dctq bug): {str(exc)[:400]}") from None
    return out, _report(out, r, opset, folded, raised, converted, kept)


def convert_file(src: Path | str, dst: Path | str, **kwargs: Any) -> Fp16Report:
    """Read the ONNX file `src`, run `to_fp16(**kwargs)`, write the result to `dst` atomically.

    Raises ExportError for a missing or unreadable `src` or the errors of `to_fp16`.
    """
    import_onnx("the FP16 pass")
    converted, report = to_fp16(load_onnx(src), **kwargs)
    write_bytes_atomic(Path(dst), converted.SerializeToString())
    return report
