"""The FP16 pass for TensorRT's strongly typed networks (deploy/onnx/fp16.py), checked without TensorRT:
onnx's checker and strict type inference, ONNX Runtime CPU (which runs the FP16 graph), exact
agreement where FP16 is exact, and closeness to the FP32 graph where it is not."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from dctq.calibration.ptq import ptq
from dctq.calibration.quant.recipe import QuantRecipe
from dctq.common.errors import ExportError
from dctq.deploy.export.onnx import export_onnx
from dctq.deploy.onnx.dtypes import float_types_by_op, typing_problems
from dctq.deploy.onnx.fp16 import convert_file, to_fp16
from dctq.deploy.onnx.lint import lint_qdq
from dctq.models import create_model, example_inputs

# FP16 rounding ahead of a QuantizeLinear moves a few activations to the neighbouring int8 level;
# measured 40 dB on this model (44 dB with FP32 scales). 30 dB leaves room without hiding a wrong graph.
MIN_SQNR_DB = 30.0


def sqnr_db(ref: np.ndarray, got: np.ndarray) -> float:
    ref, got = ref.astype(np.float64), got.astype(np.float64)
    return float(10 * np.log10((ref**2).sum() / max(((ref - got) ** 2).sum(), 1e-30)))


def run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    declared = {i.name: i.type.tensor_type.elem_type for i in model.graph.input}
    cast = {
        k: v.astype(np.float16 if declared[k] == TensorProto.FLOAT16 else np.float32)
        for k, v in feeds.items()
    }
    return session.run(None, cast)[0]


@pytest.fixture(scope="module")
def qdq(tmp_path_factory: pytest.TempPathFactory) -> onnx.ModelProto:
    """A tiny calibrated DCT net (Resize, residual adds, Gemm) exported as Q/DQ ONNX.

    The TorchScript exporter is used for speed (~1 s against ~10 s for dynamo on this machine); the
    dynamo graph's op set is a subset of this one (no Constant/Identity/Shape nodes).
    """
    torch.manual_seed(0)
    model = create_model("dct_cifar_upsampling", widths=(8, 8), depths=(1, 1)).eval()
    qmodel = ptq(model, QuantRecipe(calibrator="max"), [example_inputs(model, 8, seed=s) for s in range(2)])
    path = export_onnx(qmodel, tmp_path_factory.mktemp("fp16") / "tiny.onnx", dynamo=False)
    return onnx.load(str(path))


@pytest.fixture(scope="module")
def feeds(qdq: onnx.ModelProto) -> dict[str, np.ndarray]:
    model = create_model("dct_cifar_upsampling", widths=(8, 8), depths=(1, 1))
    y, cbcr, qt = example_inputs(model, 16, seed=5)
    return {"y": y.numpy(), "cbcr": cbcr.numpy(), "qt": qt.numpy()}


def test_fp16_graph_is_valid_and_typed_explicitly(qdq: onnx.ModelProto) -> None:
    converted, report = to_fp16(qdq)
    onnx.checker.check_model(converted, full_check=True)
    assert typing_problems(converted) == []
    assert report.scales == "fp16" and report.opset == 19
    n_weights = sum(1 for n in qdq.graph.node if n.op_type == "Conv") + 1  # + the Gemm
    assert report.weights_folded == n_weights
    # no weight QuantizeLinear left: every weight is an int8 constant behind its DequantizeLinear
    q_inputs = {n.input[0] for n in converted.graph.node if n.op_type == "QuantizeLinear"}
    assert not q_inputs & {i.name for i in converted.graph.initializer}
    types = float_types_by_op(converted)
    for op in ("Conv", "Gemm", "QuantizeLinear", "DequantizeLinear", "Add", "Mul", "Div", "Sub"):
        assert types[op] == {"float16"}, (op, types[op])
    assert types["Resize"] == {"float16", "float32"}  # data FP16, its `scales` input FP32 by definition
    assert report.kept_fp32 and report.casts_inserted == 4  # 3 inputs in, 1 output out
    scale_types = {
        numpy_helper.to_array(i).dtype
        for i in converted.graph.initializer
        if i.name
        in {n.input[1] for n in converted.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")}
    }
    assert scale_types <= {np.dtype(np.float16)}
    assert [i.type.tensor_type.elem_type for i in converted.graph.input] == [TensorProto.FLOAT] * 3


def test_fp16_graph_runs_close_to_fp32(qdq: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> None:
    converted, _ = to_fp16(qdq)
    ref, got = run(qdq, feeds), run(converted, feeds)
    assert got.dtype == np.float32 and got.shape == ref.shape
    assert sqnr_db(ref, got) > MIN_SQNR_DB


def test_fp16_inputs_are_exact_for_coefficients(qdq: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> None:
    """Integer coefficients are exact in FP16, so declaring the inputs FP16 changes no output bit."""
    cast_inside, _ = to_fp16(qdq, fp16_outputs=True)
    fp16_io, report = to_fp16(qdq, fp16_inputs=["y", "cbcr"], fp16_outputs=True)
    assert dict(report.inputs) == {"y": "float16", "cbcr": "float16", "qt": "float32"}
    assert dict(report.outputs) == {"logits": "float16"}
    assert np.array_equal(feeds["y"].astype(np.float16).astype(np.float32), feeds["y"])
    a, b = run(cast_inside, feeds), run(fp16_io, feeds)
    assert a.dtype == b.dtype == np.float16
    np.testing.assert_array_equal(a, b)


def test_fp32_scales_are_consistent(qdq: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> None:
    converted, report = to_fp16(qdq, scales="fp32")
    assert report.scales == "fp32" and report.opset == 18
    assert typing_problems(converted) == []
    types = float_types_by_op(converted)
    assert types["QuantizeLinear"] == {"float32"} and types["DequantizeLinear"] == {"float32"}
    assert types["Conv"] == {"float16"} and types["Gemm"] == {"float16"}
    assert sqnr_db(run(qdq, feeds), run(converted, feeds)) > MIN_SQNR_DB


def _qdq_graph(scale: float) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4])
    inits = [
        numpy_helper.from_array(np.array(scale, np.float32), "s"),
        numpy_helper.from_array(np.array(0, np.int8), "z"),
        numpy_helper.from_array(np.ones((1, 4), np.float32), "b"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"]),
        helper.make_node("Add", ["dq", "b"], ["out"]),
    ]
    graph = helper.make_graph(nodes, "g", [x], [out], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_tiny_scales_keep_every_scale_fp32() -> None:
    model = _qdq_graph(1e-6)  # below FP16's smallest normal number
    _, report = to_fp16(model)
    assert report.scales == "fp32"
    with pytest.raises(ExportError, match="normal range"):
        to_fp16(model, scales="fp16")
    converted, report = to_fp16(_qdq_graph(0.05))
    assert report.scales == "fp16"
    x = np.array([[0.1, -0.2, 0.33, 7.0]], np.float32)
    np.testing.assert_allclose(run(converted, {"x": x}), run(_qdq_graph(0.05), {"x": x}), atol=2e-3)


def test_typing_problems_finds_an_implicit_cast() -> None:
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT16, [2])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [2])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, [2])
    graph = helper.make_graph([helper.make_node("Add", ["a", "b"], ["out"])], "g", [a, b], [out])
    problems = typing_problems(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]))
    assert problems and ("Add" in problems[0] or "type inference" in problems[0])


def test_control_flow_is_refused() -> None:
    cond = helper.make_tensor_value_info("c", TensorProto.BOOL, [])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1])
    branch = helper.make_graph(
        [helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(np.ones(1, np.float32)))],
        "b",
        [],
        [helper.make_tensor_value_info("k", TensorProto.FLOAT, [1])],
    )
    node = helper.make_node("If", ["c"], ["out"], then_branch=branch, else_branch=branch)
    model = helper.make_model(
        helper.make_graph([node], "g", [cond], [out]), opset_imports=[helper.make_opsetid("", 18)]
    )
    with pytest.raises(ExportError, match="subgraph"):
        to_fp16(model)


def test_convert_file_writes_atomically(qdq: onnx.ModelProto, tmp_path) -> None:
    src = tmp_path / "m.onnx"
    onnx.save(qdq, str(src))
    report = convert_file(src, tmp_path / "m16.onnx", fp16_inputs=True)
    assert dict(report.inputs)["y"] == "float16"
    assert typing_problems(onnx.load(str(tmp_path / "m16.onnx"))) == []
    assert not lint_qdq(tmp_path / "m16.onnx").violations  # TensorRT's Q/DQ rules still hold
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m16.onnx"]
    with pytest.raises(ExportError, match="not a readable ONNX"):
        (tmp_path / "bad.onnx").write_bytes(b"garbage")
        convert_file(tmp_path / "bad.onnx", tmp_path / "out.onnx")


def test_scales_behind_an_identity_are_range_checked_and_kept_exact() -> None:
    """A scale the TorchScript exporter deduplicated through an Identity is a constant scale too: it
    decides the scale type, and with FP32 scales it is not rounded to FP16 on its way (1e5 would be inf)."""
    x = np.array([[0.1, -0.2, 0.33, 7.0]], np.float32)
    for scale in (1e-6, 1e5):  # below FP16's smallest normal number, above its largest
        model = _qdq_graph(scale)
        model.graph.node.insert(0, helper.make_node("Identity", ["s"], ["s_dedup"]))
        for node in model.graph.node[1:3]:
            node.input[1] = "s_dedup"
        with pytest.raises(ExportError, match="normal range"):
            to_fp16(model, scales="fp16")
        converted, report = to_fp16(model)
        assert report.scales == "fp32" and typing_problems(converted) == []
        np.testing.assert_allclose(run(converted, {"x": x}), run(model, {"x": x}), atol=2e-3)


def test_a_constant_reaching_an_fp32_input_through_an_identity_stays_fp32() -> None:
    """Resize's `scales` takes FP32 only; the constant behind an Identity keeps its FP32 value rather
    than being rounded to FP16 and cast back."""
    scales = np.array([1, 1, 1.7, 1.7], np.float32)  # 1.7 is not an FP16 number
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 2])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 1, 3, 3])
    nodes = [
        helper.make_node("Identity", ["scales"], ["scales_dedup"]),
        helper.make_node("Resize", ["x", "", "scales_dedup"], ["out"], mode="nearest"),
    ]
    graph = helper.make_graph(nodes, "g", [x], [out], [numpy_helper.from_array(scales, "scales")])
    converted, report = to_fp16(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]))
    assert report.kept_fp32 == ("scales",) and report.constants_fp16 == 0
    (init,) = converted.graph.initializer
    np.testing.assert_array_equal(numpy_helper.to_array(init), scales)
    assert report.casts_inserted == 2  # x into FP16, the output back to FP32: none for the scales
    assert typing_problems(converted) == []


def _weight_quantizer(model: onnx.ModelProto):
    """(weight initializer, scale initializer) of the first QuantizeLinear of a constant float weight."""
    from dctq.deploy.onnx.graph import GraphIndex

    index = GraphIndex(model)
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and index.is_const(node.input[0]):
            return index.tensor(node.input[0]), index.tensor(node.input[1])
    raise AssertionError("no weight QuantizeLinear")


def test_a_near_zero_weight_channel_keeps_every_scale_fp16(
    qdq: onnx.ModelProto, feeds: dict[str, np.ndarray]
) -> None:
    """One output channel with near-zero weights has a scale below FP16's range. Its scale is raised to
    2^-14 (and its int8 weights follow), so the graph keeps FP16 scales and no Cast between a DQ and
    a Conv, instead of switching every scale to FP32 with Casts around each DQ."""
    model = onnx.ModelProto()
    model.CopyFrom(qdq)
    weight, scale = _weight_quantizer(model)
    w, s = numpy_helper.to_array(weight).copy(), numpy_helper.to_array(scale).copy()
    w[0] = np.where(w[0] >= 0, 1e-7, -1e-7)
    s[0] = 1e-7 / 127
    weight.CopyFrom(numpy_helper.from_array(w, weight.name))
    scale.CopyFrom(numpy_helper.from_array(s, scale.name))

    converted, report = to_fp16(model)
    assert report.scales == "fp16" and report.scales_fp32 == () and report.weight_scales_raised == 1
    assert report.opset == 19 and typing_problems(converted) == []
    produced_by = {o: n for n in converted.graph.node for o in n.output}
    layer_inputs = [i for n in converted.graph.node if n.op_type in ("Conv", "Gemm") for i in n.input[:2]]
    assert all(produced_by[i].op_type == "DequantizeLinear" for i in layer_inputs)
    assert {v.rule for v in lint_qdq(converted).violations} == set()
    assert sqnr_db(run(model, feeds), run(converted, feeds)) > MIN_SQNR_DB


def test_an_activation_scale_outside_fp16_stays_fp32_alone(
    qdq: onnx.ModelProto, feeds: dict[str, np.ndarray]
) -> None:
    """Only the offending pair computes in FP32 (behind Casts); every other scale stays FP16."""
    from dctq.deploy.onnx.graph import GraphIndex

    model = onnx.ModelProto()
    model.CopyFrom(qdq)
    index = GraphIndex(model)
    act_q = next(
        n
        for n in model.graph.node
        if n.op_type == "QuantizeLinear"
        and not index.is_const(n.input[0])
        and n.input[0] not in ("y", "cbcr")
    )
    scale = index.tensor(act_q.input[1])
    scale.CopyFrom(numpy_helper.from_array(np.array(3e-5, np.float32), scale.name))  # below 2^-14

    converted, report = to_fp16(model)
    assert report.scales == "mixed" and report.scales_fp32 == (index.source(act_q.input[1]),)
    assert report.opset == 19 and typing_problems(converted) == []
    scale_types = {
        numpy_helper.to_array(i).dtype
        for i in converted.graph.initializer
        if i.name
        in {n.input[1] for n in converted.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")}
    }
    assert scale_types == {np.dtype(np.float16), np.dtype(np.float32)}
    # the exporter shares this scale between the pairs of two convs: those two read DQ -> Cast, no other
    pairs = [n for n, _ in index.uses(index.source(act_q.input[1])) if n.op_type == "QuantizeLinear"]
    cast_fed = [v.node for v in lint_qdq(converted).violations if v.rule == "dq-cast"]
    assert len(cast_fed) == len(pairs) == 2
    assert sum(n.op_type in ("Conv", "Gemm") for n in converted.graph.node) > 2
    assert "fp16-scale" in {v.rule for v in lint_qdq(model).violations}
    assert sqnr_db(run(model, feeds), run(converted, feeds)) > MIN_SQNR_DB
