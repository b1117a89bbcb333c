"""The TensorRT Q/DQ linter: one hand-made bad graph per rule, a clean export, and `dctq check`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from dctq.cli.main import app
from dctq.deploy.onnx.lint import SEVERITY, lint_qdq

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

C_IN, C_OUT = 4, 6


def _const(name: str, value: np.ndarray):
    return numpy_helper.from_array(np.asarray(value), name)


def conv_graph(
    *,
    act_zero=np.int8(0),
    act_scale=np.float32(0.1),
    w_scale=None,
    w_axis: int = 0,
    quantize_data: bool = True,
    quantize_weight: bool = True,
    opset: int = 18,
    extra_nodes=(),
    extra_inits=(),
    output: str = "y",
    extra_outputs=(),
):
    """x [1, 4, 8, 8] -> Q -> DQ -> Conv(DQ(int8 weight [6, 4, 3, 3])) -> y, with knobs to break each rule."""
    nodes, inits = [], [_const("s_x", act_scale), _const("z_x", act_zero)]
    w = np.random.default_rng(0).integers(-127, 128, size=(C_OUT, C_IN, 3, 3)).astype(np.int8)
    w_scale = np.full(C_OUT, 0.01, np.float32) if w_scale is None else w_scale
    data = "x"
    if quantize_data:
        nodes += [
            helper.make_node("QuantizeLinear", ["x", "s_x", "z_x"], ["xq"], name="q_x"),
            helper.make_node("DequantizeLinear", ["xq", "s_x", "z_x"], ["xd"], name="dq_x"),
        ]
        data = "xd"
    if quantize_weight:
        inits += [_const("w_q", w), _const("s_w", w_scale), _const("z_w", np.zeros(w_scale.shape, np.int8))]
        nodes.append(
            helper.make_node("DequantizeLinear", ["w_q", "s_w", "z_w"], ["w"], name="dq_w", axis=w_axis)
        )
    else:
        inits.append(_const("w", w.astype(np.float32) * 0.01))
    nodes.append(helper.make_node("Conv", [data, "w"], ["conv"], name="conv", pads=[1, 1, 1, 1]))
    nodes.append(helper.make_node("Relu", ["conv"], ["y"], name="relu"))
    nodes += list(extra_nodes)
    inits += list(extra_inits)
    outputs = [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)]
    outputs += [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in extra_outputs]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, C_IN, 8, 8])], outputs, inits
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def gemm_graph(trans_b: int, axis: int):
    """x [2, 8] -> Q/DQ -> Gemm(DQ(weight), transB) -> y [2, 5]: weight [5, 8] if transB else [8, 5]."""
    w = np.ones((5, 8) if trans_b else (8, 5), np.int8)
    inits = [
        _const("s", np.float32(0.1)),
        _const("z", np.int8(0)),
        _const("w_q", w),
        _const("s_w", np.full(5, 0.01, np.float32)),
        _const("z_w", np.zeros(5, np.int8)),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="q"),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="dq"),
        helper.make_node("DequantizeLinear", ["w_q", "s_w", "z_w"], ["w"], name="dq_w", axis=axis),
        helper.make_node("Gemm", ["xd", "w"], ["y"], name="gemm", transB=trans_b),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def rules_of(model) -> dict[str, str]:
    return {v.rule: v.severity for v in lint_qdq(model).violations}


def test_clean_graphs_pass():
    assert lint_qdq(conv_graph()).violations == ()
    assert lint_qdq(gemm_graph(trans_b=1, axis=0)).violations == ()
    assert lint_qdq(gemm_graph(trans_b=0, axis=1)).violations == ()


def _add_residual():
    """conv output + raw graph input: the Add's residual input has no Q/DQ."""
    return {
        "extra_nodes": [helper.make_node("Add", ["conv", "r"], ["sum"], name="add")],
        "extra_outputs": ["sum"],
    }


CASES = {
    "zero-point": {"act_zero": np.int8(3)},
    "dtype": {"act_zero": np.uint8(0)},
    "scale": {"act_scale": np.float32(-0.1)},
    "axis": {"w_axis": 1},
    "half-quantized": {"quantize_weight": False},
    "opset": {"opset": 13},
    "q-without-dq": {
        "extra_nodes": [helper.make_node("Relu", ["xq"], ["bad"], name="relu_on_int8")],
        "extra_outputs": ["bad"],
    },
    "unsupported-op": {
        "extra_nodes": [helper.make_node("Unique", ["y"], ["u"], name="unique")],
        "extra_outputs": ["u"],
    },
    "unknown-op": {
        "extra_nodes": [helper.make_node("FancyNewOp", ["y"], ["u"], name="fancy")],
        "extra_outputs": ["u"],
    },
}


@pytest.mark.parametrize("rule", sorted(CASES))
def test_each_rule_flags_its_bad_graph(rule):
    found = rules_of(conv_graph(**CASES[rule]))
    assert rule in found, found
    assert found[rule] == SEVERITY[rule]


def test_residual_add_without_qdq_is_a_warning():
    model = conv_graph(**_add_residual())
    model.graph.input.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, [1, C_OUT, 8, 8]))
    report = lint_qdq(model)
    assert report.rules() == {"residual-add"} and report.ok
    assert report.warnings[0].node == "add"


def test_float_layer_is_a_warning_and_fp32_graph_says_no_qdq():
    mixed = conv_graph(
        extra_nodes=[helper.make_node("Conv", ["y", "w2"], ["y2"], name="conv2")],
        extra_inits=[_const("w2", np.ones((2, C_OUT, 1, 1), np.float32))],
        extra_outputs=["y2"],
    )
    report = lint_qdq(mixed)
    assert report.rules() == {"float-layer"} and report.ok and report.warnings[0].node == "conv2"
    fp32 = lint_qdq(conv_graph(quantize_data=False, quantize_weight=False))
    assert fp32.rules() == {"no-qdq"} and fp32.ok


def test_type_details_and_scale_values():
    float_zero = lint_qdq(conv_graph(act_zero=np.array(0, dtype=np.float32)))
    assert [v.rule for v in float_zero.violations] == ["dtype", "dtype"]
    assert "not a TensorRT Q/DQ type" in float_zero.violations[0].message
    zero_fp8 = numpy_helper.from_array(np.zeros((), np.float32), "z_x")
    zero_fp8.data_type = TensorProto.FLOAT8E4M3FN
    zero_fp8.ClearField("float_data")
    zero_fp8.raw_data = b"\x00"
    model = conv_graph()
    model.graph.initializer[1].CopyFrom(zero_fp8)
    messages = [v.message for v in lint_qdq(model).violations if v.rule == "dtype"]
    assert messages and "unsupported here" in messages[0]
    assert "scale" in rules_of(conv_graph(act_scale=np.float32(np.inf)))
    wrong_count = rules_of(conv_graph(w_scale=np.full(C_OUT, -1.0, np.float32)))
    assert wrong_count == {"scale": "error"}


def test_gemm_axis_follows_trans_b_and_activations_are_per_tensor():
    assert rules_of(gemm_graph(trans_b=1, axis=1)) == {"axis": "error"}
    assert rules_of(gemm_graph(trans_b=0, axis=0)) == {"axis": "error"}
    per_channel_act = conv_graph(act_scale=np.full(C_IN, 0.1, np.float32), act_zero=np.zeros(C_IN, np.int8))
    assert "axis" in rules_of(per_channel_act)


def test_requantize_warning_for_mismatched_pair():
    model = conv_graph(extra_inits=[_const("s_other", np.float32(0.2))])
    for node in model.graph.node:
        if node.name == "dq_x":
            node.input[1] = "s_other"
    assert rules_of(model) == {"requantize": "warning"}


def test_legacy_exported_fake_quant_graph_is_clean(tmp_path):
    import torch

    from dctq.calibration.ptq import ptq
    from dctq.calibration.quant.recipe import QuantRecipe
    from dctq.deploy.export.onnx import export_onnx
    from dctq.models import create_model, example_inputs

    torch.manual_seed(0)
    model = create_model("dct_cifar_upsampling", widths=[8, 16], depths=[1, 1]).eval()
    qmodel = ptq(model, QuantRecipe(calibrator="max"), [example_inputs(model, 8)])
    report = lint_qdq(export_onnx(qmodel, tmp_path / "q.onnx", dynamo=False))
    assert report.ok and report.violations == () and report.quantize_nodes >= 10


def test_check_cli_exit_codes_and_json(tmp_path):
    good, bad = tmp_path / "good.onnx", tmp_path / "bad.onnx"
    onnx.save(conv_graph(), str(good))
    onnx.save(conv_graph(act_zero=np.int8(5)), str(bad))
    runner = CliRunner()
    ok = runner.invoke(app, ["check", str(good)])
    assert ok.exit_code == 0, ok.output
    assert "0 error(s), 0 warning(s) ok" in ok.stdout
    result = runner.invoke(app, ["check", str(bad), "--json"])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["ok"] is False and data["violations"][0]["rule"] == "zero-point"
    missing = runner.invoke(app, ["check", str(tmp_path / "none.onnx")])
    assert missing.exit_code == 1
    assert missing.stderr.splitlines() == [f"error: ONNX file not found: {tmp_path / 'none.onnx'}"]


def test_scales_outside_fp16_are_flagged_where_the_fp16_pass_keeps_them_fp32():
    """An activation scale below 2^-14 makes the FP16 pass keep its pair FP32 behind Casts (fp16-scale on
    the exported graph, dq-cast on the converted one); a float weight's tiny scale is raised by the pass
    instead, so it is not flagged."""
    from dctq.deploy.onnx.fp16 import to_fp16

    tiny = conv_graph(act_scale=np.float32(1e-6))
    found = lint_qdq(tiny)
    assert found.rules() == {"fp16-scale"} and found.ok
    assert [v.node for v in found.violations] == ["q_x"]  # one warning per Q/DQ pair
    tiny.graph.output[0].CopyFrom(helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, C_OUT, 8, 8]))
    converted, report = to_fp16(tiny)
    assert report.scales == "mixed" and report.scales_fp32 == ("s_x",)
    after = lint_qdq(converted)
    # the same scale, now behind a DQ -> Cast -> Conv chain (and no half-quantized error for it)
    assert after.rules() == {"fp16-scale", "dq-cast"} and after.ok
    (cast_fed,) = [v for v in after.violations if v.rule == "dq-cast"]
    assert cast_fed.node == "conv" and "data input" in cast_fed.message

    float_weight = conv_graph(quantize_weight=False)  # w is a float constant: quantize it with a tiny channel
    w_scale = np.full(C_OUT, 0.01, np.float32)
    w_scale[2] = 1e-9
    float_weight.graph.initializer.extend([_const("s_w", w_scale), _const("z_w", np.zeros(C_OUT, np.int8))])
    conv = next(n for n in float_weight.graph.node if n.op_type == "Conv")
    conv.input[1] = "w_dq"
    float_weight.graph.node.insert(
        0, helper.make_node("QuantizeLinear", ["w", "s_w", "z_w"], ["w_q"], axis=0)
    )
    float_weight.graph.node.insert(
        1, helper.make_node("DequantizeLinear", ["w_q", "s_w", "z_w"], ["w_dq"], axis=0)
    )
    assert lint_qdq(float_weight).violations == ()
    folded_tiny = conv_graph(w_scale=np.where(np.arange(C_OUT) == 2, 1e-9, 0.01).astype(np.float32))
    assert rules_of(folded_tiny) == {"fp16-scale": "warning"}  # an int8 weight already folded: not raised


@pytest.mark.parametrize(
    ("graph", "missing"),
    [
        (helper.make_graph([], "g", [], []), "node and no input and no output"),
        (
            helper.make_graph(
                [helper.make_node("Relu", ["x"], ["y"])],
                "g",
                [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                [],
            ),
            "output",
        ),
    ],
)
def test_an_empty_graph_is_an_error(graph, missing):
    """`dctq check` passed a graph with no node at all (exit 0): nothing to build an engine of."""
    report = lint_qdq(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]))
    assert not report.ok
    assert [v.message for v in report.errors if v.rule == "empty-graph"] == [
        f"the graph has no {missing}; export the model again"
    ]


def _external(tmp_path, model, folder: str = "model"):
    """`model` saved into tmp_path/folder with its tensors in weights.bin beside it."""
    (tmp_path / folder).mkdir()
    path = tmp_path / folder / "m.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, location="weights.bin", size_threshold=0)
    return path


def test_external_data_is_read_beside_the_model_not_in_the_working_directory(tmp_path, monkeypatch):
    """The rules read scales and zero points: from the model's own weights.bin, wherever the command runs,
    even with a decoy weights.bin (of a clean graph) in the working directory."""
    path = _external(tmp_path, conv_graph(act_zero=np.int8(5)))
    decoy_dir = tmp_path / "cwd"
    decoy_dir.mkdir()
    _external(decoy_dir, conv_graph())
    (decoy_dir / "weights.bin").write_bytes((decoy_dir / "model" / "weights.bin").read_bytes())
    monkeypatch.chdir(decoy_dir)
    report = lint_qdq(path)
    assert "zero-point" in report.rules() and not report.ok


def test_missing_external_data_is_one_line(tmp_path):
    path = _external(tmp_path, conv_graph())
    (path.parent / "weights.bin").unlink()
    result = CliRunner().invoke(app, ["check", str(path)])
    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: {path} is not a readable ONNX model") and "weights.bin" in line
