"""Rewrite a TensorRT-style Q/DQ graph for ONNX Runtime on x86: the same function, integer kernels.

The exported graph carries what TensorRT wants (ARCHITECTURE.md, the quantization contract): signed
int8, zero point 0, Q/DQ on the inputs of every Conv/Gemm. ONNX Runtime's x86 integer kernels take
*uint8* activations, and its QDQ fusions (QLinearConv...) only match `DQ -> op -> Q`. Rewrites 1-4
do not change the function the graph defines; 0 adds one rounding (on by default, `add_scale`):

0. Residual Adds (`add_scale`): the TensorRT form quantizes only the shortcut input of an Add
   (TensorRT fuses the Add into the conv before it), which leaves that conv without an output Q and
   the Add in float. A Q/DQ on the conv's output, on the grid of the Add's own output quantizer (the
   Q after its Relu; the residual's grid where there is none), lets ORT build QLinearConv and
   QLinearAdd: the graph `dctq quantize --add-inputs both` exports, from the one file TensorRT takes.
   Measured on the recipe model: docs/benchmarks.md, "ONNX Runtime: one file for both runtimes".

1. Weight folding: `QuantizeLinear(float weight initializer)` is computed here (round half to even,
   saturate, as the ONNX spec says) and becomes an int8 initializer behind its DequantizeLinear.
2. Activations to uint8: int8 with zero point 0 and uint8 with zero point 128 are the same grid
   (`clip(round(x/s), -128, 127) + 128 == clip(round(x/s) + 128, 0, 255)`); every activation
   QuantizeLinear and the DequantizeLinears reading it switch to uint8/128.
3. Relu into the integer domain (`output_qdq`): `op -> Relu -> Q(s)` becomes `op -> Q(s) -> Max(q, zp)`,
   after `MaxPool -> Q` became `Q -> MaxPool` (monotonic Q: exact), so a ResNet stem's conv fuses too,
   and `Concat -> Q` became `Q -> Concat` per input (elementwise Q: exact), so do the Adds before a concat.
   `Q(relu(x)) == max(Q(x), zp)` exactly when real 0 sits on the zero point, and the op (Conv, Gemm,
   Add) gains the output Q that ORT's fusion needs.
4. Float weights (`fold_float_weights`): a layer ORT will not fuse (no output Q) would dequantize its
   int8 weight on every run, since ORT keeps DequantizeLinear unfolded; its `(q - zp) * scale` is
   computed once here as a float32 initializer, what that node computes.

With graph optimisations off ORT gives bit-identical outputs before and after. With them on, the
fused QLinearConv accumulates exactly in int32 and rounds the float bias to int32 where the float
graph accumulates in float32, so values on a rounding edge can move one quantization step: the same
"equal up to rounding" as PyTorch against ORT. The fully integer graph (like `quantize_static`'s)
additionally needs a Q/DQ on the conv input of every residual Add, which the TensorRT recipe leaves
out (TensorRT fuses that Add into the conv): rewrite 0.

`rewrite_for_ort` applies them to a copy; `RewriteStats` says what changed.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from typing import Any

import numpy as np

from ...common.errors import ExportError
from .graph import GraphIndex, attr_int, drop_unused, fold_weight_quantizers, import_onnx

logger = logging.getLogger(__name__)

_QUANT_OPS = ("QuantizeLinear", "DequantizeLinear")
_OUTPUT_Q_OPS = ("Conv", "Gemm", "MatMul", "Add")
_WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


@dataclasses.dataclass(frozen=True)
class RewriteStats:
    """What `rewrite_for_ort` changed: weight Qs folded to int8 initializers, activation Qs (and their
    DQs) moved to uint8, Relus moved into the integer domain (ops that gained an output Q), weights
    pre-dequantized for layers left in float, and activation Qs left alone (with reasons)."""

    weights_folded: int
    activations_uint8: int
    dequantize_uint8: int
    relu_to_integer: int
    float_weights: int
    skipped: tuple[str, ...]
    add_inputs_quantized: int = 0
    maxpools_to_integer: int = 0
    concats_to_integer: int = 0


def _int8_zero(g: GraphIndex, node: Any) -> bool:
    if len(node.input) < 3 or not node.input[2]:
        return False  # no zero point means uint8 0 by the spec: not ours
    zero = g.const(node.input[2])
    return zero is not None and zero.dtype == np.int8 and zero.size == 1 and not zero.any()


def _set_elem_type(g: GraphIndex, name: str, dtype: type) -> None:
    """Keep the graph's declared type of tensor `name` in step with a rewrite (ORT checks it)."""
    from onnx import helper

    for info in [*g.graph.value_info, *g.graph.output]:
        if info.name == name:
            info.type.tensor_type.elem_type = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


ADD_SCALES = ("output", "residual", "max")
"""Where `quantize_add_inputs` takes the scale of the Q/DQ it adds on an Add's conv input: the Add's
output quantizer (after its Relu), the Add's residual input, or the larger of the two."""


def _add_output_scale(g: GraphIndex, add: Any) -> str | None:
    """Scale name of the one per-tensor int8 Q reading `add` (directly or through one Relu), else None."""
    out = add.output[0]
    readers = g.readers(out)
    if len(readers) == 1 and readers[0].op_type == "Relu" and out not in g.outputs:
        out = readers[0].output[0]
        readers = g.readers(out)
    if out in g.outputs or not readers or any(r.op_type != "QuantizeLinear" for r in readers):
        return None
    if len({r.input[1] for r in readers}) != 1 or not all(_int8_zero(g, r) for r in readers):
        return None
    return readers[0].input[1]


def _quantize_add_inputs(g: GraphIndex, scale_from: str) -> int:
    """TensorRT form -> ONNX Runtime form: `Conv -> Add(., DQ(residual))` gains `Q -> DQ` on its conv input.

    The Q takes the zero point of the residual's DQ (int8 0) and the scale `scale_from` says
    (ADD_SCALES); an Add whose output is not quantized afterwards takes the residual's scale. ORT can
    then fuse the conv into QLinearConv and the Add into QLinearAdd. Not the same function: the conv
    output is rounded to that grid once more before the Add (one extra rounding, and clipping at
    127 steps), which TensorRT's fused conv+add does not do; see docs/benchmarks.md for its effect.
    """
    from onnx import helper

    added = 0
    after: dict[int, list[Any]] = {}
    for node in g.graph.node:
        if node.op_type != "Add" or len(node.input) != 2:
            continue
        made = [g.producer.get(name) for name in node.input]
        dq_slots = [i for i, m in enumerate(made) if m is not None and m.op_type == "DequantizeLinear"]
        if len(dq_slots) != 1:
            continue
        residual = made[dq_slots[0]]
        conv = made[1 - dq_slots[0]]
        if (
            conv is None
            or conv.op_type not in _WEIGHTED_OPS
            or conv.output[0] in g.outputs
            or len(g.readers(conv.output[0])) != 1
            or g.made_by(conv.input[0], "DequantizeLinear") is None
            or not _int8_zero(g, residual)
        ):
            continue
        res_scale = g.const(residual.input[1])
        if res_scale is None or res_scale.size != 1:
            continue
        out_name = _add_output_scale(g, node)
        if out_name is None or scale_from == "residual":
            scale_name = residual.input[1]
        elif scale_from == "output":
            scale_name = out_name
        else:
            bigger = float(g.const(out_name)) >= float(res_scale)
            scale_name = out_name if bigger else residual.input[1]
        x = conv.output[0]
        q_out, dq_out = g.fresh(f"{x}_add_q"), g.fresh(f"{x}_add_dq")
        zero = residual.input[2]
        after[id(conv)] = [
            helper.make_node("QuantizeLinear", [x, scale_name, zero], [q_out], name=g.fresh(f"{q_out}_node")),
            helper.make_node(
                "DequantizeLinear", [q_out, scale_name, zero], [dq_out], name=g.fresh(f"{dq_out}_node")
            ),
        ]
        node.input[1 - dq_slots[0]] = dq_out
        added += 1
    if added:
        g.replace_nodes([m for n in g.graph.node for m in [n, *after.get(id(n), [])]])
    return added


def _to_uint8(g: GraphIndex, skipped: list[str]) -> tuple[int, int]:
    """Per-tensor activation Q (and the DQs reading it) from int8/0 to uint8/128."""
    zp_name = None
    n_q = n_dq = 0
    for node in g.graph.node:
        if node.op_type != "QuantizeLinear" or g.is_const(node.input[0]) or not _int8_zero(g, node):
            continue
        scale = g.const(node.input[1])
        if scale is None or scale.size != 1:
            why = "per-channel" if scale is not None else "computed scale"
            skipped.append(f"{g.label(node)}: {why} activation quantizer kept int8")
            continue
        readers = g.readers(node.output[0])
        if (
            node.output[0] in g.outputs
            or not readers
            or any(r.op_type != "DequantizeLinear" or not _int8_zero(g, r) for r in readers)
        ):
            skipped.append(
                f"{g.label(node)}: its output is read by something else than an int8 DequantizeLinear"
            )
            continue
        if zp_name is None:
            zp_name = g.set_initializer(g.fresh("ort_uint8_zero_point"), np.array(128, dtype=np.uint8))
        node.input[2] = zp_name
        _set_elem_type(g, node.output[0], np.uint8)
        n_q += 1
        for r in readers:
            r.input[2] = zp_name
            n_dq += 1
    return n_q, n_dq


def _quantize_before_maxpool(g: GraphIndex) -> int:
    """`x -> MaxPool -> Q(s, zp)` becomes `x -> Q(s, zp) -> MaxPool` (on integers).

    Exact: QuantizeLinear is monotonic, so the max of the quantized window is the quantized max. The
    stem's `Conv -> Relu -> MaxPool -> Q` of a ResNet then ends in a Q right after the Relu, so the
    stem conv fuses into QLinearConv, and the pool runs on uint8 (ORT's NHWC integer MaxPool) instead
    of float NCHW (measured on resnet50, batch 8: 19% of the INT8 graph's time; docs/benchmarks.md).
    """
    moved = 0
    drop: set[int] = set()
    before: dict[int, Any] = {}
    for node in g.graph.node:
        if node.op_type != "MaxPool" or len(node.output) != 1 or node.output[0] in g.outputs:
            continue
        readers = g.readers(node.output[0])
        if len(readers) != 1 or readers[0].op_type != "QuantizeLinear" or len(readers[0].input) < 3:
            continue
        q = readers[0]
        scale = g.const(q.input[1])
        if scale is None or scale.size != 1 or g.const(q.input[2]) is None:
            continue
        moved_q = copy.deepcopy(q)
        moved_q.input[0] = node.input[0]
        moved_q.output[0] = g.fresh(f"{node.input[0]}_quantized")
        node.input[0] = moved_q.output[0]
        node.output[0] = q.output[0]  # the pool now writes what the Q wrote: its readers are unchanged
        before[id(node)] = moved_q
        drop.add(id(q))
        moved += 1
    if moved:
        g.replace_nodes(
            [
                m
                for n in g.graph.node
                if id(n) not in drop
                for m in ([before[id(n)]] if id(n) in before else []) + [n]
            ]
        )
    return moved


def _quantize_before_concat(g: GraphIndex) -> int:
    """`Concat(x1..xn) -> Q(s, zp)` becomes `Q(x1, s, zp)..Q(xn, s, zp) -> Concat` (on integers).

    Exact: a per-tensor Q is elementwise, so quantizing the parts is quantizing the whole. The DCT nets'
    late concat (`Add -> Relu` of the Y and the chroma branch -> Concat -> Q) then has a Q right after
    each Relu, so the Adds gain the output Q that ORT's QLinearAdd fusion needs (rewrite 3) instead of
    running in float at full resolution.
    """
    moved = 0
    drop: set[int] = set()
    before: dict[int, list[Any]] = {}
    for node in g.graph.node:
        if node.op_type != "Concat" or len(node.output) != 1 or node.output[0] in g.outputs:
            continue
        readers = g.readers(node.output[0])
        if len(readers) != 1 or readers[0].op_type != "QuantizeLinear" or len(readers[0].input) < 3:
            continue
        quant = readers[0]
        scale = g.const(quant.input[1])
        if scale is None or scale.size != 1 or g.const(quant.input[2]) is None:
            continue
        if any(g.is_const(x) for x in node.input):
            continue
        new = []
        for i, x in enumerate(node.input):
            q = copy.deepcopy(quant)
            q.name = g.fresh(f"{g.label(node)}_q{i}")
            q.input[0], q.output[0] = x, g.fresh(f"{x}_quantized")
            node.input[i] = q.output[0]
            new.append(q)
        node.output[0] = quant.output[0]  # the Concat now writes what the Q wrote: its readers are unchanged
        before[id(node)] = new
        drop.add(id(quant))
        moved += 1
    if moved:
        g.replace_nodes([m for n in g.graph.node if id(n) not in drop for m in [*before.get(id(n), []), n]])
    return moved


def _relu_to_integer(g: GraphIndex) -> int:
    """op -> Relu -> Q(s) [-> DQ ...] becomes op -> Q(s) -> Max(q, zero point) [-> DQ ...] (see module doc)."""
    from onnx import helper

    replaced = 0
    drop: set[int] = set()
    after: dict[int, list[Any]] = {}
    for node in g.graph.node:
        out = node.output[0] if node.output else ""
        readers = g.readers(out)
        if (
            node.op_type not in _OUTPUT_Q_OPS
            or out in g.outputs
            or len(readers) != 1
            or readers[0].op_type != "Relu"
        ):
            continue
        relu = readers[0]
        quants = g.readers(relu.output[0])
        if relu.output[0] in g.outputs or not quants or any(q.op_type != "QuantizeLinear" for q in quants):
            continue
        if len({tuple(q.input[1:3]) for q in quants}) != 1 or len(quants[0].input) < 3:
            continue
        scale_name, zero_name = quants[0].input[1], quants[0].input[2]
        scale, zero = g.const(scale_name), g.const(zero_name)
        if scale is None or scale.size != 1 or zero is None or zero.size != 1:
            continue
        if not ((zero.dtype == np.int8 and int(zero) == 0) or (zero.dtype == np.uint8 and int(zero) == 128)):
            continue  # Relu commutes with Q only when real 0 sits on the zero point
        q_out = g.fresh(f"{out}_quantized")
        new = [
            helper.make_node(
                "QuantizeLinear", [out, scale_name, zero_name], [q_out], name=g.fresh(f"{g.label(node)}_q")
            )
        ]
        for q in quants:
            # each former Q output is now max(q, zp): same tensor name, so its readers are unchanged
            new.append(
                helper.make_node(
                    "Max", [q_out, zero_name], [q.output[0]], name=g.fresh(f"{g.label(relu)}_int")
                )
            )
            drop.add(id(q))
        drop.add(id(relu))
        after[id(node)] = new
        replaced += 1
    if replaced:
        g.replace_nodes(
            [m for n in g.graph.node for m in ([] if id(n) in drop else [n]) + after.get(id(n), [])]
        )
    return replaced


def _fusable(g: GraphIndex, node: Any) -> bool:
    """Whether ORT's QDQ fusion can take `node`: DQ(uint8) data, DQ weight, one QuantizeLinear reader."""
    data = g.made_by(node.input[0], "DequantizeLinear")
    readers = g.readers(node.output[0])
    zero = g.const(data.input[2]) if data is not None and len(data.input) > 2 else None
    return (
        zero is not None
        and zero.dtype == np.uint8
        and len(readers) == 1
        and readers[0].op_type == "QuantizeLinear"
        and node.output[0] not in g.outputs
    )


def _fold_float_weights(g: GraphIndex) -> int:
    """DequantizeLinear(constant int8 weight) of a layer ORT will not fuse -> its float32 result.

    ORT keeps DequantizeLinear nodes unfolded (to preserve QDQ groups), so a layer left in float would
    dequantize its weight on every run; `(q - zero) * scale` in float32 is what that node computes.
    """
    drop: set[int] = set()
    for node in g.graph.node:
        if node.op_type not in _WEIGHTED_OPS or len(node.input) < 2 or _fusable(g, node):
            continue
        wdq = g.made_by(node.input[1], "DequantizeLinear")
        if wdq is None or len(g.readers(wdq.output[0])) != 1 or len(wdq.input) < 3:
            continue
        q, scale, zero = (g.const(n) for n in wdq.input[:3])
        if q is None or scale is None or zero is None:
            continue
        if scale.size > 1:
            shape = [1] * q.ndim
            shape[attr_int(wdq, "axis", 1) % q.ndim] = -1
            scale, zero = scale.reshape(shape), zero.reshape(shape)
        w = (q.astype(np.int32) - zero.astype(np.int32)).astype(np.float32) * scale.astype(np.float32)
        g.set_initializer(wdq.output[0], w.astype(np.float32))
        drop.add(id(wdq))
    if drop:
        g.replace_nodes([n for n in g.graph.node if id(n) not in drop])
    return len(drop)


def is_qdq_model(model: Any) -> bool:
    """Whether the ONNX model holds any QuantizeLinear/DequantizeLinear node."""
    return any(n.op_type in _QUANT_OPS for n in model.graph.node)


def rewrite_for_ort(
    model: Any,
    *,
    output_qdq: bool = True,
    fold_float_weights: bool = True,
    add_scale: str | None = "output",
) -> tuple[Any, RewriteStats]:
    """A copy of the ONNX `model` (onnx.ModelProto) rewritten for ONNX Runtime (see module docstring).

    Rewrites 1 and 2 always run; `output_qdq` enables 3, `fold_float_weights` 4, `add_scale` (one
    of ADD_SCALES, None to leave the Adds alone) 0, the Q/DQ on the conv input of residual Adds. Graph inputs and
    outputs keep their names, types and shapes. Raises ExportError when the rewritten graph fails
    onnx's checker (a bug in the rewrite).
    """
    onnx = import_onnx()
    out = copy.deepcopy(model)
    skipped: list[str] = []
    if add_scale is not None and add_scale not in ADD_SCALES:
        raise ValueError(f"add_scale must be one of {ADD_SCALES} or None, got {add_scale!r}")
    folded = fold_weight_quantizers(GraphIndex(out))
    adds = _quantize_add_inputs(GraphIndex(out), add_scale) if add_scale is not None else 0
    n_q, n_dq = _to_uint8(GraphIndex(out), skipped)
    pools = _quantize_before_maxpool(GraphIndex(out)) if output_qdq else 0
    concats = _quantize_before_concat(GraphIndex(out)) if output_qdq else 0
    relus = _relu_to_integer(GraphIndex(out)) if output_qdq else 0
    float_weights = _fold_float_weights(GraphIndex(out)) if fold_float_weights else 0
    drop_unused(out)
    try:
        onnx.checker.check_model(out)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"the ONNX Runtime rewrite produced an invalid graph: {str(exc)[:300]}") from None
    stats = RewriteStats(folded, n_q, n_dq, relus, float_weights, tuple(skipped), adds, pools, concats)
    logger.info(
        "ORT rewrite: %d weights to int8, %d Add conv inputs quantized, %d activation Q (+%d DQ) to uint8, "
        "%d Relu to integer, %d float weights",
        folded,
        adds,
        n_q,
        n_dq,
        relus,
        float_weights,
    )
    for reason in skipped:
        logger.debug("ORT rewrite left alone %s", reason)
    return out, stats
