"""The ONNX graph toolkit (deploy/onnx/graph.py) that the linter, the ORT rewrite and the FP16 pass
share: Identity chains followed everywhere, one weight folding, one clean-up, one reader."""

from __future__ import annotations

import numpy as np
import pytest

from dctq.common.errors import ExportError
from dctq.deploy.onnx.dtypes import typing_problems
from dctq.deploy.onnx.fp16 import to_fp16
from dctq.deploy.onnx.graph import (
    GraphIndex,
    default_opset,
    drop_unused,
    dtype_name,
    load_onnx,
    opset_of,
    quantize_linear,
)
from dctq.deploy.onnx.ort_rewrite import rewrite_for_ort

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

WEIGHT = np.random.default_rng(0).normal(size=(3, 2, 1, 1)).astype(np.float32)


def _model(nodes, inputs, outputs, inits, opset: int = 18):
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def identity_weight_graph() -> onnx.ModelProto:
    """x -> Q/DQ -> Conv whose weight reaches its QuantizeLinear through two Identity nodes, as the
    TorchScript exporter writes a deduplicated initializer."""
    inits = [
        numpy_helper.from_array(WEIGHT, "W"),
        numpy_helper.from_array(np.abs(WEIGHT).max(axis=(1, 2, 3)) / 127, "ws"),
        numpy_helper.from_array(np.zeros(3, np.int8), "wz"),
        numpy_helper.from_array(np.array(0.05, np.float32), "xs"),
        numpy_helper.from_array(np.array(0, np.int8), "xz"),
    ]
    nodes = [
        helper.make_node("Identity", ["W"], ["W_a"]),
        helper.make_node("Identity", ["W_a"], ["W_b"]),
        helper.make_node("QuantizeLinear", ["W_b", "ws", "wz"], ["Wq"], axis=0),
        helper.make_node("DequantizeLinear", ["Wq", "ws", "wz"], ["Wdq"], axis=0),
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xdq"]),
        helper.make_node("Conv", ["xdq", "Wdq"], ["out"]),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 4, 4])
    return _model(nodes, [x], [out], inits)


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_both_passes_fold_a_weight_behind_an_identity_chain() -> None:
    model = identity_weight_graph()
    x = np.random.default_rng(1).normal(size=(1, 2, 4, 4)).astype(np.float32)
    ref = run(model, x)
    fp16, report = to_fp16(model)
    rewritten, stats = rewrite_for_ort(model)
    assert report.weights_folded == stats.weights_folded == 1
    for graph in (fp16.graph, rewritten.graph):
        assert "Identity" not in [n.op_type for n in graph.node]  # the dedup chain went with its reader
        assert "W" not in [i.name for i in graph.initializer]  # no float copy of the weight is left
    assert numpy_helper.to_array(next(i for i in fp16.graph.initializer if i.name == "Wq")).dtype == np.int8
    assert typing_problems(fp16) == []
    np.testing.assert_array_equal(run(rewritten, x), ref)
    np.testing.assert_allclose(run(fp16, x), ref, atol=0.02)


def test_index_follows_identity_chains() -> None:
    g = GraphIndex(identity_weight_graph())
    assert g.source("W_b") == "W" and g.is_const("W_b") and g.const_type("W_b") == "float32"
    np.testing.assert_array_equal(g.const("W_b"), WEIGHT)
    assert g.tensor("W_b") is g.inits["W"]
    assert [(n.op_type, slot) for n, slot in g.uses("W")] == [("QuantizeLinear", 0)]
    assert [n.op_type for n in g.readers("W")] == ["Identity"]
    assert not g.is_const("xq") and g.const("xq") is None
    assert g.made_by("Wdq", "DequantizeLinear") is not None and g.made_by("Wdq", "Conv") is None


def test_fresh_avoids_every_name_of_the_graph() -> None:
    g = GraphIndex(identity_weight_graph())
    assert g.fresh("x") == "x_1"  # a graph input
    assert g.fresh("x") == "x_2" and g.fresh("W_a") == "W_a_1" and g.fresh("new") == "new"
    assert g.set_initializer(g.fresh("new"), np.ones(2, np.float32)) == "new_1"
    np.testing.assert_array_equal(g.const("new_1"), np.ones(2, np.float32))


def test_drop_unused_keeps_what_is_read_and_the_live_duplicate() -> None:
    def const_node(name: str) -> onnx.NodeProto:
        return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.ones(1, np.float32)))

    branch = helper.make_graph(
        [helper.make_node("Identity", ["outer"], ["b"])],
        "b",
        [],
        [helper.make_tensor_value_info("b", TensorProto.FLOAT, [1])],
    )
    nodes = [
        const_node("dead_c"),
        helper.make_node("Identity", ["dead_c"], ["dead_1"]),
        helper.make_node("Identity", ["dead_1"], ["dead_2"]),
        helper.make_node("Relu", ["x"], ["dead_relu"]),  # not a constant: left to the passes
        const_node("outer"),  # read inside a subgraph only
        helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch),
        helper.make_node("Add", ["x", "w"], ["z"]),
    ]
    inits = [
        numpy_helper.from_array(np.zeros(1, np.float32), "w"),
        numpy_helper.from_array(np.zeros(1, np.float32), "unused"),
        numpy_helper.from_array(np.full(1, 7, np.float32), "w"),  # shadows the first "w"
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    c = helper.make_tensor_value_info("c", TensorProto.BOOL, [])
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in ("y", "z")]
    model = _model(nodes, [x, c], outputs, inits)
    model.graph.value_info.extend(
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in ("dead_1", "dead_relu", "gone")]
    )
    drop_unused(model)
    assert [n.output[0] for n in model.graph.node] == ["dead_relu", "outer", "y", "z"]
    assert [numpy_helper.to_array(i).tolist() for i in model.graph.initializer] == [[7.0]]
    assert [v.name for v in model.graph.value_info] == ["dead_relu"]
    drop_unused(model.graph)  # a graph works as well, and a second pass changes nothing
    assert len(model.graph.node) == 4 and len(model.graph.initializer) == 1


def test_load_onnx_names_the_file(tmp_path) -> None:
    with pytest.raises(ExportError, match=r"ONNX file not found: .*missing\.onnx"):
        load_onnx(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    with pytest.raises(ExportError, match=r"bad\.onnx is not a readable ONNX model .*re-export it"):
        load_onnx(bad)
    with pytest.raises(ExportError, match=r"bad\.onnx is not a readable ONNX model"):
        load_onnx(bad, data=b"garbage")
    good = tmp_path / "good.onnx"
    onnx.save(identity_weight_graph(), str(good))
    assert len(load_onnx(good, external_data=False).graph.node) == 7
    assert len(load_onnx(good, data=good.read_bytes()).graph.node) == 7


def test_small_lookups() -> None:
    assert [dtype_name(t) for t in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.INT8)] == [
        "float32",
        "float16",
        "int8",
    ]
    model = identity_weight_graph()
    assert opset_of(model) == default_opset(model) == 18
    del model.opset_import[:]
    assert opset_of(model) is None
    with pytest.raises(ExportError, match="no default-domain opset"):
        default_opset(model)


def test_quantize_linear_per_channel_saturates() -> None:
    x = np.array([[1.0, -1.0], [300.0, -300.0]], np.float32)
    q = quantize_linear(x, np.array([0.5, 1.0], np.float32), np.zeros(2, np.int8), axis=0)
    assert q.dtype == np.int8 and q.tolist() == [[2, -2], [127, -128]]
    assert quantize_linear(np.array([2.5, 3.5], np.float32), np.float32(1), np.uint8(128), 0).tolist() == [
        130,
        132,
    ]
