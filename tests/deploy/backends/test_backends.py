"""Backends registry, the ONNX Runtime uint8 rewrite, the torch backend, predict and evaluate on artifacts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import tiny_dct

from dctq.calibration.ptq import ptq
from dctq.calibration.quant.checkpoint import save_quantized
from dctq.calibration.quant.recipe import QuantRecipe
from dctq.common.errors import BackendUnavailable, DctqError
from dctq.deploy.artifact import load_artifact
from dctq.deploy.backends.registry import get_backend, list_backends, load_runner, register_backend
from dctq.deploy.export.onnx import export_onnx
from dctq.deploy.predict import predict
from dctq.models import example_inputs, save_checkpoint
from dctq.models.checkpoint import LoadedCheckpoint

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
ort = pytest.importorskip("onnxruntime")

from dctq.deploy.onnx.graph import quantize_linear  # noqa: E402
from dctq.deploy.onnx.ort_rewrite import ADD_SCALES, rewrite_for_ort  # noqa: E402

ARCH_KWARGS = {"num_classes": 2, "widths": [8, 16], "depths": [1, 1]}
CLASSES = ["cat", "dog"]


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """A float checkpoint, its quantized twin (checkpoint), and the Q/DQ ONNX export of the latter."""
    out = tmp_path_factory.mktemp("backends")
    model = tiny_dct(num_classes=2)
    qmodel = ptq(model, QuantRecipe(calibrator="max"), [example_inputs(model, 16, seed=s) for s in range(4)])
    fp_pt = save_checkpoint(
        out / "f.pt", model, arch="dct_cifar_upsampling", arch_kwargs=ARCH_KWARGS, class_names=CLASSES
    )
    fp = LoadedCheckpoint(model, "dct_cifar_upsampling", ARCH_KWARGS, CLASSES, {})
    q_pt = save_quantized(out / "q.pt", qmodel, fp)
    return {
        "model": model,
        "qmodel": qmodel,
        "f.pt": fp_pt,
        "q.pt": q_pt,
        "q.onnx": export_onnx(load_artifact(q_pt).checkpoint, out / "q.onnx"),
    }


def _feeds(model, batch: int, seed: int) -> dict[str, torch.Tensor]:
    return dict(zip(("y", "cbcr", "qt"), example_inputs(model, batch, seed=seed), strict=True))


def _session(proto, level) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])


def test_registry_lists_and_finds_backends():
    assert {"ort", "torch", "tensorrt"} <= set(list_backends())
    assert get_backend("ort").accepts == ("onnx",)
    assert "checkpoint" in get_backend("torch").accepts
    with pytest.raises(DctqError, match="unknown backend 'onnx'"):
        get_backend("onnx")

    class Other:
        name = "ort"
        accepts = ("onnx",)

        def load(self, artifact, *, device="auto", **options):
            raise AssertionError

    with pytest.raises(DctqError, match="already registered"):
        register_backend(Other())


def test_backend_refuses_foreign_kinds_and_devices(artifacts):
    with pytest.raises(DctqError, match="cannot run a checkpoint"):
        load_runner(load_artifact(artifacts["q.pt"]), "ort")
    with pytest.raises(BackendUnavailable, match="CPU only"):
        load_runner(load_artifact(artifacts["q.onnx"]), "ort", device="cuda")
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailable, match="CUDA build of torch"):
            load_runner(load_artifact(artifacts["f.pt"]), "torch", device="cuda")


def test_quantize_linear_matches_onnx_runtime_on_ties():
    scale = np.float32(0.1)
    x = np.concatenate(
        [(np.arange(-140, 140) + 0.5) * scale, np.random.default_rng(0).normal(size=500) * 5]
    ).astype(np.float32)
    ref = onnx.helper.make_model(
        onnx.helper.make_graph(
            [onnx.helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"])],
            "g",
            [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [x.size])],
            [onnx.helper.make_tensor_value_info("q", onnx.TensorProto.INT8, [x.size])],
            [onnx.numpy_helper.from_array(scale, "s"), onnx.numpy_helper.from_array(np.int8(0), "z")],
        ),
        opset_imports=[onnx.helper.make_opsetid("", 18)],
    )
    expected = _session(ref, ort.GraphOptimizationLevel.ORT_DISABLE_ALL).run(None, {"x": x})[0]
    assert np.array_equal(quantize_linear(x, scale, np.int8(0), 1), expected)


def test_rewrite_keeps_the_function_and_fuses_integer_convs(artifacts, tmp_path):
    proto = onnx.load(str(artifacts["q.onnx"]))
    rewritten, stats = rewrite_for_ort(proto, add_scale=None)  # the Adds as exported: exact
    assert stats.add_inputs_quantized == 0
    assert stats.weights_folded == stats.activations_uint8 == stats.dequantize_uint8 >= 7
    assert stats.relu_to_integer >= 3 and stats.skipped == ()
    zero_types = {
        onnx.numpy_helper.to_array(i).dtype.name
        for i in rewritten.graph.initializer
        if i.name in {n.input[2] for n in rewritten.graph.node if n.op_type == "QuantizeLinear"}
    }
    assert zero_types == {"uint8"}
    feeds = {k: v.numpy() for k, v in _feeds(artifacts["model"], 64, seed=5).items()}
    plain = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    before = _session(proto, plain).run(None, feeds)[0]
    after = _session(rewritten, plain).run(None, feeds)[0]
    assert np.abs(before - after).max() <= 1e-5  # measured: 0.0 (the same function, op for op)
    optimized = tmp_path / "opt.onnx"
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(optimized)
    ort.InferenceSession(rewritten.SerializeToString(), options, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(str(optimized)).graph.node]
    assert ops.count("QLinearConv") >= 3, ops
    raw_options = ort.SessionOptions()
    raw_options.optimized_model_filepath = str(tmp_path / "raw_opt.onnx")
    ort.InferenceSession(proto.SerializeToString(), raw_options, providers=["CPUExecutionProvider"])
    assert "QLinearConv" not in [n.op_type for n in onnx.load(str(tmp_path / "raw_opt.onnx")).graph.node]


def _optimized_ops(proto, path) -> list[str]:
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(path)
    ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return [n.op_type for n in onnx.load(str(path)).graph.node]


def test_rewrite_quantizes_the_conv_input_of_residual_adds(artifacts, tmp_path):
    """The TensorRT-form file (Q/DQ on the shortcut input of Adds only) becomes ORT's fully integer
    graph: every conv a QLinearConv, every quantized-after Add a QLinearAdd, close to the exact rewrite."""
    proto = onnx.load(str(artifacts["q.onnx"]))
    adds = [n for n in proto.graph.node if n.op_type == "Add"]
    exact, _ = rewrite_for_ort(proto, add_scale=None)
    exact_ops = _optimized_ops(exact, tmp_path / "exact.onnx")
    assert exact_ops.count("Conv") >= 1 and "QLinearAdd" not in exact_ops  # the convs before Adds stay float
    feeds = {k: v.numpy() for k, v in _feeds(artifacts["model"], 200, seed=7).items()}
    reference = _session(exact, ort.GraphOptimizationLevel.ORT_ENABLE_ALL).run(None, feeds)[0]
    for scale in ADD_SCALES:
        rewritten, stats = rewrite_for_ort(proto, add_scale=scale)
        assert stats.add_inputs_quantized == len(adds) == 2 and stats.skipped == ()
        ops = _optimized_ops(rewritten, tmp_path / f"{scale}.onnx")
        assert ops.count("QLinearConv") == exact_ops.count("QLinearConv") + exact_ops.count("Conv"), ops
        assert "Conv" not in ops and ops.count("QLinearAdd") >= 1, ops
        out = _session(rewritten, ort.GraphOptimizationLevel.ORT_ENABLE_ALL).run(None, feeds)[0]
        noise = np.sum((out - reference) ** 2) / np.sum(reference**2)
        assert 0 < noise < 10 ** (-25 / 10), (scale, noise)  # one more rounding: not exact, > 25 dB
        assert np.mean(out.argmax(1) == reference.argmax(1)) >= 0.9
    # "output": the added Q reads the Add's output quantizer (the Q after its Relu) where there is one
    rewritten, _ = rewrite_for_ort(proto, add_scale="output")
    nodes = rewritten.graph.node
    readers = {name: [n for n in nodes if name in n.input] for n in nodes for name in n.output}
    added = [n for n in nodes if n.op_type == "QuantizeLinear" and n.output[0].endswith("_add_q")]
    assert len(added) == 2
    with_output_q = 0
    for q in added:
        (dq,) = readers[q.output[0]]
        (add,) = readers[dq.output[0]]
        after = [r for r in readers[add.output[0]] if r.op_type == "QuantizeLinear"]
        residual = next(n for n in nodes if n.output[0] in add.input and n is not dq)
        # the Add's output grid where it has one (the last block's Add feeds the float pooling)
        expected = after[0].input[1] if after else residual.input[1]
        assert add.op_type == "Add" and residual.op_type == "DequantizeLinear" and q.input[1] == expected
        with_output_q += bool(after)
    assert with_output_q == 1
    with pytest.raises(ValueError, match="add_scale"):
        rewrite_for_ort(proto, add_scale="both")


def test_ort_backend_agrees_with_fake_quant_torch(artifacts):
    qmodel = artifacts["qmodel"]
    batch = _feeds(qmodel, 200, seed=11)
    with torch.no_grad():
        ref = qmodel(*batch.values())
    art = load_artifact(artifacts["q.onnx"])
    for rewrite in (False, True):
        out = load_runner(art, "ort", rewrite=rewrite).predict(batch)
        assert out.shape == ref.shape and out.dtype == torch.float32
        assert float((out.argmax(1) == ref.argmax(1)).float().mean()) >= 0.995
        assert float((out - ref).abs().max()) <= 0.03 * float(ref.abs().max())


def test_torch_backend_runs_checkpoints_with_int16_batches(artifacts):
    qmodel = artifacts["qmodel"]
    batch = _feeds(qmodel, 4, seed=2)
    with torch.no_grad():
        ref = qmodel(*batch.values())
    runner = load_runner(load_artifact(artifacts["q.pt"]))
    assert runner.backend == "torch" and runner.device in ("cpu", "cuda")
    int16 = {**batch, "y": batch["y"].to(torch.int16), "cbcr": batch["cbcr"].to(torch.int16), "label": None}
    assert torch.equal(runner(int16).cpu(), ref)


def test_predict_reads_jpegs_and_backends_agree(artifacts, jpeg_folder, make_jpeg):
    files = sorted(jpeg_folder.rglob("*.jpg"))
    big = make_jpeg(
        "big.jpg", height=72, width=40, seed=3
    )  # another grid: centre-cropped/padded to 4x4 blocks
    gray = make_jpeg("gray.jpg", mode="L", seed=4)
    images = [*files, big, gray]
    via_torch = predict(artifacts["q.pt"], images, top_k=2, batch_size=3)
    via_ort = predict(artifacts["q.onnx"], images, top_k=2, batch_size=4)
    assert [p.path for p in via_torch] == [str(p) for p in images]
    assert {p.label for p in via_torch} <= set(CLASSES)
    assert [p.label for p in via_ort] == [p.label for p in via_torch]
    for a, b in zip(via_ort, via_torch, strict=True):
        assert len(a.top) == 2 and abs(sum(v for _, _, v in a.top) - 1) < 1e-5
        assert abs(a.probability - b.probability) < 0.05
    assert via_ort[0].to_dict()["top"][0]["label"] == via_ort[0].label


def test_evaluate_accepts_any_artifact(artifacts, jpeg_folder):
    from dctq.deploy.evaluate import evaluate
    from dctq.deploy.predict import artifact_predictor
    from dctq.jpeg.dataset import JpegFolder

    def factory(quality):
        return JpegFolder(jpeg_folder, input_size=32, train=False)

    onnx_runner, art = artifact_predictor(artifacts["q.onnx"])
    assert art.class_names == tuple(CLASSES)
    by_ort = evaluate(onnx_runner, factory, None, batch_size=4)
    torch_runner, _ = artifact_predictor(artifacts["q.pt"], device="cpu")
    by_torch = evaluate(torch_runner, factory, None, batch_size=4)
    assert by_ort.rows[0].images == 8
    assert by_ort.rows[0].top1 == by_torch.rows[0].top1
    assert abs(by_ort.rows[0].loss - by_torch.rows[0].loss) < 0.05


def test_ort_runs_any_batch_size_on_a_fixed_batch_graph(artifacts, tmp_path):
    """`evaluate` of an ONNX exported with --static-batch failed in ONNX Runtime on its first batch."""
    fixed = export_onnx(
        artifacts["model"], tmp_path / "fixed.onnx", dynamic_batch=False, example_batch=2, dynamo=False
    )
    dynamic = export_onnx(artifacts["model"], tmp_path / "dynamic.onnx", dynamo=False)
    feeds = {k: v.numpy() for k, v in _feeds(artifacts["model"], 5, seed=3).items()}
    want = load_runner(dynamic).predict(feeds)
    got = load_runner(fixed).predict(feeds)
    assert got.shape == (5, 2)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def _qdq(tensor: str, scale: str) -> list:
    """`tensor -> Q -> DQ` on the int8 grid of `scale` (zero point "z"): outputs `<tensor>q`, `<tensor>d`."""
    from onnx import helper

    return [
        helper.make_node("QuantizeLinear", [tensor, scale, "z"], [f"{tensor}q"]),
        helper.make_node("DequantizeLinear", [f"{tensor}q", scale, "z"], [f"{tensor}d"]),
    ]


def _graph_model(nodes: list, name: str, inits: list, x_shape: list, y_shape: list):
    """An opset-17 model of `nodes` from float input x to float output y."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_rewrite_quantizes_before_concat_exactly(tmp_path):
    """The DCT nets' late concat, `Conv -> Relu` twice -> Concat -> Q -> DQ -> Conv: the Q moves onto each
    Concat input (exact: a per-tensor Q is elementwise), so both branch convs gain an output Q and fuse."""
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(1)
    inits = [
        numpy_helper.from_array(rng.normal(size=(8, 3, 3, 3)).astype(np.float32), "wa"),
        numpy_helper.from_array(rng.normal(size=(8, 3, 1, 1)).astype(np.float32), "wb"),
        numpy_helper.from_array(rng.normal(size=(4, 16, 1, 1)).astype(np.float32), "w2"),
        numpy_helper.from_array(np.float32(0.05), "sx"),
        numpy_helper.from_array(np.float32(0.02), "sw"),
        numpy_helper.from_array(np.float32(0.1), "sc"),
        numpy_helper.from_array(np.int8(0), "z"),
    ]
    nodes = [
        *_qdq("x", "sx"),
        *_qdq("wa", "sw"),
        *_qdq("wb", "sw"),
        *_qdq("w2", "sw"),
        helper.make_node("Conv", ["xd", "wad"], ["ca"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["ca"], ["ra"]),
        helper.make_node("Conv", ["xd", "wbd"], ["cb"]),
        helper.make_node("Relu", ["cb"], ["rb"]),
        helper.make_node("Concat", ["ra", "rb"], ["cat"], axis=1),
        *_qdq("cat", "sc"),
        helper.make_node("Conv", ["catd", "w2d"], ["y"]),
    ]
    proto = _graph_model(nodes, "late_concat", inits, ["n", 3, 8, 8], ["n", 4, 8, 8])
    rewritten, stats = rewrite_for_ort(proto)
    assert stats.concats_to_integer == 1 and stats.relu_to_integer == 2
    x = {"x": rng.normal(size=(4, 3, 8, 8)).astype(np.float32) * 2}
    plain = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    assert np.array_equal(_session(proto, plain).run(None, x)[0], _session(rewritten, plain).run(None, x)[0])
    ops = _optimized_ops(rewritten, tmp_path / "cat.onnx")
    assert ops.count("QLinearConv") == 2 and ops.count("Conv") == 1, ops  # the head conv has no output Q
    assert "QLinearConv" not in _optimized_ops(
        rewrite_for_ort(proto, output_qdq=False)[0], tmp_path / "off.onnx"
    )


def test_rewrite_quantizes_before_maxpool_exactly(tmp_path):
    """A ResNet stem, `Conv -> Relu -> MaxPool -> Q -> DQ -> Conv`: the Q moves before the pool (exact,
    Q is monotonic), so the stem conv fuses into QLinearConv and the pool runs on integers."""
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(size=(8, 3, 3, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.normal(size=(4, 8, 1, 1)).astype(np.float32), "w2"),
        numpy_helper.from_array(np.float32(0.05), "sx"),
        numpy_helper.from_array(np.float32(0.02), "sw"),
        numpy_helper.from_array(np.float32(0.1), "sa"),
        numpy_helper.from_array(np.int8(0), "z"),
    ]
    nodes = [
        *_qdq("x", "sx"),
        *_qdq("w1", "sw"),
        helper.make_node("Conv", ["xd", "w1d"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        *_qdq("p1", "sa"),
        *_qdq("w2", "sw"),
        helper.make_node("Conv", ["p1d", "w2d"], ["y"]),
    ]
    proto = _graph_model(nodes, "stem", inits, ["n", 3, 16, 16], ["n", 4, 8, 8])
    rewritten, stats = rewrite_for_ort(proto)
    assert stats.maxpools_to_integer == 1 and stats.relu_to_integer == 1
    x = {"x": rng.normal(size=(4, 3, 16, 16)).astype(np.float32) * 2}
    plain = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    assert np.array_equal(_session(proto, plain).run(None, x)[0], _session(rewritten, plain).run(None, x)[0])
    ops = _optimized_ops(rewritten, tmp_path / "stem.onnx")
    # the stem conv is integer now; the head conv (no Q after it) stays float
    assert ops.count("QLinearConv") == 1 and ops.count("Conv") == 1, ops
    assert "QLinearConv" not in _optimized_ops(
        rewrite_for_ort(proto, output_qdq=False)[0], tmp_path / "off.onnx"
    )
