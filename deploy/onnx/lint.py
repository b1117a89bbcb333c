"""Check an ONNX graph against TensorRT's explicit-quantization rules before building an engine.

TensorRT 10/11 take the precision of every layer from the Q/DQ nodes of the graph (implicit INT8
calibration is gone), so a misplaced or mistyped Q/DQ costs accuracy or speed silently, or fails
the build far from its cause. Rules and severities:

| rule | severity | what |
|---|---|---|
| opset | error | default-domain opset below 17 (warning above 24, TensorRT 10.15's newest) |
| empty-graph | error | no node, no graph input or no graph output: nothing a builder could make an engine of |
| zero-point | error | a Q/DQ zero point that is not 0, or not a constant |
| dtype | error | a Q/DQ type other than int8 (uint8 and int32 are not TensorRT Q/DQ types; fp8/int4/fp4 are, but dctq deploys INT8 only) |
| scale | error | a scale that is not a constant, or not positive and finite |
| axis | error | per-channel scales on an activation, on the wrong weight axis (Conv: 0, ConvTranspose: 1, Gemm: 0 with transB=1 else 1, MatMul: last), or of the wrong length |
| half-quantized | error | a Conv/ConvTranspose/Gemm/MatMul-with-constant-weight with only one of data and weight behind a DequantizeLinear |
| q-without-dq | error | a QuantizeLinear whose output reaches anything but a DequantizeLinear |
| unsupported-op | error | an op TensorRT's ONNX parser does not take (custom domains included) |
| float-layer | warning | such a layer with neither input quantized: it runs in float (a recipe's skip rule, or a miss) |
| fp16-scale | warning | a Q/DQ scale outside FP16's normal range [2^-14, 65504] (weight scales the FP16 pass can raise excepted): for TensorRT that pair stays FP32 behind Casts (deploy/onnx/scales.py) |
| dq-cast | warning | such a layer reading a DequantizeLinear through a Cast: TensorRT may not fuse DQ -> Cast -> layer into an INT8 layer and run it in FP16 instead |
| residual-add | warning | an Add fed by a quantized conv whose other input is not dequantized: TensorRT cannot fuse it into the conv |
| requantize | warning | a Q -> DQ pair whose scales or zero points differ |
| unknown-op | warning | an op missing from the support table below (newer ONNX op) |
| no-qdq | warning | no Q/DQ at all: an FP32 graph |

The op table is TensorRT 10.15's (onnx-tensorrt docs/operators.md, "Supported: Y").
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from .graph import GraphIndex, attr_int, load_onnx, opset_of
from .scales import FP16_MAX, out_of_range

MIN_OPSET, MAX_OPSET = 17, 24

TRT_SUPPORTED_OPS = frozenset(
    """Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh Attention AveragePool BatchNormalization
    BlackmanWindow Cast CastLike Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh
    CumSum DeformConv DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten
    Floor Gather GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater
    GreaterOrEqual GridSample GroupNormalization GRU HammingWindow HannWindow HardSigmoid HardSwish Hardmax
    Identity If ImageScaler InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log
    LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean MeanVarianceNormalization Min Mish
    Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad ParametricSoftplus Pow PRelu QuantizeLinear
    RandomNormal RandomNormalLike RandomUniform RandomUniformLike Range Reciprocal ReduceL1 ReduceL2
    ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu
    Reshape Resize ReverseSequence RMSNormalization RNN RoiAlign RotaryEmbedding Round STFT ScaledTanh Scan
    Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus
    Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh TensorScatter ThresholdedRelu Tile TopK Transpose
    Trilu Unsqueeze Upsample Where Xor""".split()
)
TRT_UNSUPPORTED_OPS = frozenset(
    """AffineGrid Bernoulli BitShift BitwiseAnd BitwiseNot BitwiseOr BitwiseXor Col2Im CenterCropPad Compress
    ConcatFromSequence ConvInteger DFT Det DynamicQuantizeLinear ImageDecoder MatMulInteger MaxRoiPool
    MaxUnpool MelWeightMatrix Multinomial NegativeLogLikelihoodLoss Optional OptionalGetElement
    OptionalHasElement QLinearConv QLinearMatMul RegexFullMatch SequenceAt SequenceConstruct SequenceEmpty
    SequenceErase SequenceInsert SequenceLength SequenceMap SoftmaxCrossEntropyLoss SplitToSequence
    StringConcat StringNormalizer StringSplit TfIdfVectorizer Unique""".split()
)
SEVERITY = {
    "opset": "error",
    "empty-graph": "error",
    "zero-point": "error",
    "dtype": "error",
    "scale": "error",
    "axis": "error",
    "half-quantized": "error",
    "q-without-dq": "error",
    "unsupported-op": "error",
    "float-layer": "warning",
    "fp16-scale": "warning",
    "dq-cast": "warning",
    "residual-add": "warning",
    "requantize": "warning",
    "unknown-op": "warning",
    "no-qdq": "warning",
}
_QDQ = ("QuantizeLinear", "DequantizeLinear")
_LAYERS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
_TRT_LOW_PRECISION = ("float8", "float4", "int4", "uint4")  # TensorRT quantized types besides int8


@dataclasses.dataclass(frozen=True)
class Violation:
    """One broken rule at one node (`node` is the node's name, or its op and index when unnamed)."""

    node: str
    rule: str
    severity: str
    message: str


@dataclasses.dataclass(frozen=True)
class LintReport:
    """All violations of one graph, with counts; `ok` when there is no error (warnings allowed)."""

    source: str
    opset: int | None
    nodes: int
    quantize_nodes: int
    dequantize_nodes: int
    violations: tuple[Violation, ...]

    @property
    def errors(self) -> tuple[Violation, ...]:
        return tuple(v for v in self.violations if v.severity == "error")

    @property
    def warnings(self) -> tuple[Violation, ...]:
        return tuple(v for v in self.violations if v.severity == "warning")

    @property
    def ok(self) -> bool:
        return not self.errors

    def rules(self) -> set[str]:
        return {v.rule for v in self.violations}

    def to_dict(self) -> dict[str, Any]:
        return {
            **{
                k: getattr(self, k)
                for k in ("source", "opset", "nodes", "quantize_nodes", "dequantize_nodes")
            },
            "ok": self.ok,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "violations": [dataclasses.asdict(v) for v in self.violations],
        }


def _load(model_or_path: Any) -> tuple[Any, str]:
    if isinstance(model_or_path, str | Path):
        # With its external data (resolved beside the model, never in the working directory): the rules
        # read the values of scales, zero points and weights, wherever they are stored.
        return load_onnx(model_or_path, external_data=True), str(Path(model_or_path))
    return model_or_path, "<model>"


def lint_qdq(model_or_path: Any) -> LintReport:
    """Lint an ONNX model (a path or an onnx.ModelProto) against the rules in the module docstring.

    Raises ExportError for a missing or unreadable file, BackendUnavailable without onnx.
    """
    model, source = _load(model_or_path)
    g = GraphIndex(model)
    found: list[Violation] = []

    def add(node: Any, rule: str, message: str, severity: str | None = None) -> None:
        found.append(
            Violation(
                g.label(node) if node is not None else "<graph>", rule, severity or SEVERITY[rule], message
            )
        )

    opset = opset_of(model)
    if opset is None or opset < MIN_OPSET:
        add(
            None,
            "opset",
            f"opset {opset} is below {MIN_OPSET}: TensorRT's explicit quantization needs {MIN_OPSET}+",
        )
    elif opset > MAX_OPSET:
        add(None, "opset", f"opset {opset} is newer than TensorRT 10.15 parses ({MAX_OPSET})", "warning")
    nodes = list(model.graph.node)
    graph_inputs = {i.name for i in model.graph.input} - {i.name for i in model.graph.initializer}
    missing = [
        what
        for what, n in (("node", nodes), ("input", graph_inputs), ("output", model.graph.output))
        if not n
    ]
    if missing:
        add(None, "empty-graph", f"the graph has no {' and no '.join(missing)}; export the model again")
    qdq = [n for n in nodes if n.op_type in _QDQ]
    for node in nodes:
        _check_op(node, add)
    for node in qdq:
        _check_qdq(g, node, add)
    if not qdq:
        add(None, "no-qdq", "the graph has no QuantizeLinear/DequantizeLinear: TensorRT builds it in float")
    else:
        for node in nodes:
            if node.op_type in _LAYERS:
                _check_layer(g, node, add)
            elif node.op_type == "Add":
                _check_add(g, node, add)
    return LintReport(
        source=source,
        opset=opset,
        nodes=len(nodes),
        quantize_nodes=sum(n.op_type == "QuantizeLinear" for n in nodes),
        dequantize_nodes=sum(n.op_type == "DequantizeLinear" for n in nodes),
        violations=tuple(found),
    )


def _check_op(node: Any, add: Any) -> None:
    if node.domain not in ("", "ai.onnx"):
        add(
            node,
            "unsupported-op",
            f"{node.domain}.{node.op_type} is a custom-domain op TensorRT's parser does not know",
        )
    elif node.op_type in TRT_UNSUPPORTED_OPS:
        add(node, "unsupported-op", f"{node.op_type} is not supported by TensorRT's ONNX parser")
    elif node.op_type not in TRT_SUPPORTED_OPS:
        add(node, "unknown-op", f"{node.op_type} is not in dctq's TensorRT 10.15 support table; check it")


def _qdq_type(g: GraphIndex, node: Any) -> str | None:
    """The integer/fp8 type of a Q/DQ: its zero point's type, else (DQ) its input's constant type."""
    if len(node.input) >= 3 and node.input[2]:
        return g.const_type(node.input[2])
    if node.op_type == "QuantizeLinear":
        return "uint8"  # the spec's default output type without a zero point
    source = node.input[0]
    q = g.made_by(source, "QuantizeLinear")
    if q is not None:
        return _qdq_type(g, q)
    return g.const_type(source)


def _check_qdq(g: GraphIndex, node: Any, add: Any) -> None:
    kind = _qdq_type(g, node)
    if kind != "int8":
        if kind is None:
            why = "its type cannot be told (zero point is not a constant)"
        elif kind.startswith(_TRT_LOW_PRECISION):
            why = "a TensorRT quantized type, but dctq deploys INT8 only (unsupported here)"
        else:
            why = "not a TensorRT Q/DQ type; use int8 (zero point 0)"
        add(node, "dtype", f"{node.op_type} is {kind}: {why}")
    if len(node.input) >= 3 and node.input[2]:
        zero = g.const(node.input[2])
        if zero is None:
            add(node, "zero-point", "the zero point is computed at run time; TensorRT needs a constant 0")
        elif np.asarray(zero, dtype=np.float64).any():
            add(
                node,
                "zero-point",
                f"zero point {np.unique(zero)[:4].tolist()} is not 0: TensorRT quantization is symmetric",
            )
    scale = g.const(node.input[1])
    if scale is None:
        add(node, "scale", "the scale is computed at run time; TensorRT needs a build-time constant")
        return
    values = np.asarray(scale, dtype=np.float64)
    if not np.isfinite(values).all() or (values <= 0).any():
        bad = values[~np.isfinite(values) | (values <= 0)]
        add(node, "scale", f"scale holds {bad[:4].tolist()}: every scale must be positive and finite")
    elif out_of_range(values) and not _raisable_weight_scale(g, node, values):
        if node.op_type == "QuantizeLinear" or g.made_by(node.input[0], "QuantizeLinear") is None:
            add(
                node,
                "fp16-scale",
                f"scale {values.min():.3g}..{values.max():.3g} lies outside FP16's normal range: for TensorRT "
                "the FP16 pass keeps this Q/DQ pair FP32 behind Casts, which TensorRT may not fuse into an "
                "INT8 layer; recalibrate this tensor or leave it unquantized",
            )
    if node.op_type == "QuantizeLinear":
        readers = g.readers(node.output[0])
        if node.output[0] in g.outputs or any(r.op_type != "DequantizeLinear" for r in readers):
            add(
                node,
                "q-without-dq",
                "its output must feed DequantizeLinear nodes only (TensorRT pairs every Q with a DQ)",
            )
        for r in readers:
            if r.op_type == "DequantizeLinear" and list(r.input[1:3]) != list(node.input[1:3]):
                r_scale, r_zero = g.const(r.input[1]), g.const(r.input[2]) if len(r.input) > 2 else None
                zero = g.const(node.input[2]) if len(node.input) > 2 else None
                same = (
                    r_scale is not None
                    and np.array_equal(r_scale, scale)
                    and (
                        (r_zero is None and zero is None)
                        or (r_zero is not None and zero is not None and np.array_equal(r_zero, zero))
                    )
                )
                if not same:
                    add(r, "requantize", f"scale/zero point differ from its QuantizeLinear {g.label(node)}")
    if values.size > 1:
        _check_axis(g, node, values.size, add)


def _raisable_weight_scale(g: GraphIndex, node: Any, values: np.ndarray) -> bool:
    """A float weight's quantizer (or its DQ) whose scale is only too small: the FP16 pass raises it."""
    q = node if node.op_type == "QuantizeLinear" else g.made_by(node.input[0], "QuantizeLinear")
    if q is None or float(np.abs(values).max()) > FP16_MAX:
        return False
    weight = g.const(q.input[0])
    return weight is not None and weight.dtype == np.float32


def _dequantized(g: GraphIndex, name: str) -> tuple[bool, bool]:
    """(whether tensor `name` comes from a DequantizeLinear, whether through a Cast)."""
    if g.made_by(name, "DequantizeLinear") is not None:
        return True, False
    cast = g.made_by(name, "Cast")
    return (
        (True, True) if cast is not None and g.made_by(cast.input[0], "DequantizeLinear") else (False, False)
    )


def _weight_axis(g: GraphIndex, layer: Any, rank: int) -> int:
    if layer.op_type == "ConvTranspose":
        return 1
    if layer.op_type == "Gemm":
        return 0 if attr_int(layer, "transB", 0) else 1
    if layer.op_type == "MatMul":
        return rank - 1
    return 0


def _weight_value(g: GraphIndex, node: Any) -> np.ndarray | None:
    """The constant behind a weight Q/DQ chain (Q(const) -> DQ, or DQ(const))."""
    source = node.input[0]
    q = g.made_by(source, "QuantizeLinear")
    return g.const(q.input[0] if q is not None else source)


def _check_axis(g: GraphIndex, node: Any, channels: int, add: Any) -> None:
    dqs = (
        [node]
        if node.op_type == "DequantizeLinear"
        else [r for r in g.readers(node.output[0]) if r.op_type == "DequantizeLinear"]
    )
    for dq in dqs:
        for layer in g.readers(dq.output[0]):
            if layer.op_type not in _LAYERS:
                continue
            if layer.input[0] == dq.output[0]:
                add(
                    node,
                    "axis",
                    f"per-channel scales ({channels}) on the data input of {g.label(layer)}: activations must be per tensor",
                )
                continue
            if len(layer.input) < 2 or layer.input[1] != dq.output[0]:
                continue
            weight = _weight_value(g, dq)
            rank = weight.ndim if weight is not None else (2 if layer.op_type in ("Gemm", "MatMul") else 4)
            expected = _weight_axis(g, layer, rank)
            axis = attr_int(node, "axis", 1)
            axis = axis + rank if axis < 0 else axis
            if axis != expected:
                add(
                    node,
                    "axis",
                    f"per-channel axis {axis} on the weight of {layer.op_type} {g.label(layer)}; TensorRT needs the "
                    f"output-channel axis {expected}",
                )
            elif weight is not None and weight.shape[expected] != channels:
                add(
                    node,
                    "axis",
                    f"{channels} scales for {weight.shape[expected]} output channels of {g.label(layer)}",
                )


def _check_layer(g: GraphIndex, node: Any, add: Any) -> None:
    if len(node.input) < 2:
        return
    (data_dq, data_cast), (weight_dq, weight_cast) = (
        _dequantized(g, node.input[0]),
        _dequantized(g, node.input[1]),
    )
    if data_cast or weight_cast:
        which = " and ".join(w for w, c in (("data", data_cast), ("weight", weight_cast)) if c)
        add(
            node,
            "dq-cast",
            f"its {which} input is DequantizeLinear -> Cast: TensorRT may not fuse that into an INT8 "
            f"{node.op_type} and run it in FP16 (an FP32 Q/DQ scale; see `fp16-scale`)",
        )
    weight_node = g.producer.get(node.input[1])
    if weight_cast:
        weight_node = g.producer.get(weight_node.input[0])
    constant_weight = g.is_const(node.input[1]) or (weight_dq and _weight_value(g, weight_node) is not None)
    if node.op_type == "MatMul" and not constant_weight:
        return  # activation x activation MatMul: not a weighted layer
    if data_dq and weight_dq:
        return
    if not data_dq and not weight_dq:
        add(node, "float-layer", f"{node.op_type} has no Q/DQ on its inputs: it runs in float")
        return
    missing = "weight" if data_dq else "data input"
    add(
        node,
        "half-quantized",
        f"{node.op_type} has Q/DQ on one input only; its {missing} needs a DequantizeLinear too",
    )


def _quantized_layer(g: GraphIndex, name: str) -> Any | None:
    node = g.producer.get(name)
    if node is None or node.op_type not in ("Conv", "ConvTranspose"):
        return None
    return node if g.made_by(node.input[0], "DequantizeLinear") is not None else None


def _check_add(g: GraphIndex, node: Any, add: Any) -> None:
    if len(node.input) != 2 or any(g.is_const(n) for n in node.input):
        return
    for this, other in (node.input, tuple(reversed(node.input))):
        conv = _quantized_layer(g, this)
        if conv is not None and g.made_by(other, "DequantizeLinear") is None:
            add(
                node,
                "residual-add",
                f"the other input of this Add (beside quantized {g.label(conv)}) has no Q/DQ: TensorRT cannot fuse the "
                "Add into the conv and runs it in higher precision",
            )
            return
