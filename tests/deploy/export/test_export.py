"""ONNX / TorchScript / torch.export export of float and fake-quant models, sidecars, quantized checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import tiny_dct

from dctq.calibration.ptq import ptq
from dctq.calibration.quant.checkpoint import save_quantized
from dctq.calibration.quant.model import quantize_model
from dctq.calibration.quant.recipe import QuantRecipe
from dctq.common.errors import ConfigError, DctqError, ExportError, QuantizationError
from dctq.deploy.artifact import load_artifact, sidecar_path
from dctq.deploy.export.formats import FORMATS, export_artifact
from dctq.deploy.export.onnx import export_onnx
from dctq.deploy.export.torchscript import export_program, export_torchscript
from dctq.models import create_model, example_inputs
from dctq.models.checkpoint import LoadedCheckpoint, load_checkpoint

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
ort = pytest.importorskip("onnxruntime")

ARCH_KWARGS = {"widths": [8, 16], "depths": [1, 1]}


def sqnr_db(ref: torch.Tensor, out: torch.Tensor) -> float:
    return float(10 * torch.log10(ref.pow(2).mean() / (ref - out).pow(2).mean().clamp_min(1e-30)))


def run_ort(path, inputs: tuple[torch.Tensor, ...], names=("y", "cbcr", "qt")) -> torch.Tensor:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(sess.run(None, {n: t.numpy() for n, t in zip(names, inputs, strict=True)})[0])


@pytest.fixture(scope="module")
def models():
    model = tiny_dct()
    qmodel = ptq(model, QuantRecipe(calibrator="max"), [example_inputs(model, 16, seed=s) for s in range(4)])
    return model, qmodel


@pytest.fixture(scope="module")
def exported(models, tmp_path_factory):
    model, qmodel = models
    out = tmp_path_factory.mktemp("export")
    return export_onnx(model, out / "f.onnx"), export_onnx(qmodel, out / "q.onnx")


def test_fp32_onnx_matches_torch_with_dynamic_batch(models, exported):
    model, _ = models
    path = exported[0]
    proto = onnx.load(str(path))
    assert [i.name for i in proto.graph.input] == ["y", "cbcr", "qt"]
    assert [o.name for o in proto.graph.output] == ["logits"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch
    for batch in (1, 5):
        x = example_inputs(model, batch, seed=batch)
        with torch.no_grad():
            ref = model(*x)
        out = run_ort(path, x)
        assert out.shape == (batch, 10)
        assert float((out - ref).abs().max()) < 1e-4


def test_sidecar_records_inputs_versions_and_exporter(exported):
    meta = json.loads(sidecar_path(exported[1]).read_text())
    assert meta["format"] == "dctq.artifact" and meta["kind"] == "onnx"
    assert meta["exporter"] == "dynamo" and meta["opset"] == 18
    assert [(t["name"], t["shape"]) for t in meta["inputs"]] == [
        ("y", ["batch", 64, 4, 4]),
        ("cbcr", ["batch", 128, 2, 2]),
        ("qt", ["batch", 3, 64]),
    ]
    assert meta["outputs"] == [{"name": "logits", "shape": ["batch", 10], "dtype": "float32"}]
    assert meta["recipe"]["type"] == "QuantRecipe" and meta["recipe"]["calibrator"] == "max"
    assert {"dctq", "torch", "onnx"} <= set(meta["versions"])
    float_meta = load_artifact(exported[0]).meta
    assert float_meta.recipe is None and float_meta.input_kind == "dct" and float_meta.input_size == 32


def test_fake_quant_onnx_agrees_with_torch_and_passes_the_linter(models, exported):
    from dctq.deploy.onnx.lint import lint_qdq

    _, qmodel = models
    path = exported[1]
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ops.count("QuantizeLinear") == ops.count("DequantizeLinear") >= 12
    report = lint_qdq(path)
    assert report.ok and not report.violations, report.violations
    x = example_inputs(qmodel, 200, seed=100)
    with torch.no_grad():
        ref = qmodel(*x)
    out = run_ort(path, x)
    agree = float((out.argmax(1) == ref.argmax(1)).float().mean())
    assert agree >= 0.995
    # Same function up to rounding: float accumulation order moves some values across a rounding edge
    # (measured over 3 seeds x 2 calibrators: ~10 % of logits differ, by at most 1.5 % of the logit
    # range, SQNR 40-50 dB); elementwise 1e-5 does not hold for deep fake-quant nets.
    assert float((out - ref).abs().max()) <= 0.03 * float(ref.abs().max())
    assert sqnr_db(ref, out) > 30.0


def test_static_batch_and_legacy_exporter(models, tmp_path):
    _, qmodel = models
    path = export_onnx(qmodel, tmp_path / "s.onnx", dynamic_batch=False, example_batch=3, dynamo=False)
    art = load_artifact(path)
    assert art.meta.exporter == "torchscript" and art.meta.fixed_batch == 3
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [3, 64, 4, 4]
    x = example_inputs(qmodel, 3, seed=7)
    with torch.no_grad():
        ref = qmodel(*x)
    assert sqnr_db(ref, run_ort(path, x)) > 30.0


def test_rgb_model_exports_x_only(tmp_path):
    from dctq.models.resnet import ResNet, StageSpec, conv_norm_act

    torch.manual_seed(0)
    stem = conv_norm_act(3, 8, 3)
    model = ResNet(
        [StageSpec(1, 8, block="basic")], in_channels=8, num_classes=10, input_size=16, stem=stem
    ).eval()
    path = export_onnx(model, tmp_path / "r.onnx", dynamo=False)
    assert [i.name for i in onnx.load(str(path)).graph.input] == ["x"]
    x = example_inputs(model, 2)
    with torch.no_grad():
        ref = model(*x)
    assert float((run_ort(path, x, names=("x",)) - ref).abs().max()) < 1e-4
    assert load_artifact(path).meta.input_kind == "rgb"


def test_torchscript_and_program_run_the_same_numbers(models, tmp_path):
    _, qmodel = models
    ts = export_torchscript(qmodel, tmp_path / "q.ts")
    pt2 = export_program(qmodel, tmp_path / "q.pt2")
    x = example_inputs(qmodel, 3, seed=3)
    with torch.no_grad():
        ref = qmodel(*x)
        traced = torch.jit.load(str(ts))(*x)
        program = torch.export.load(str(pt2)).module()(*x)
    assert torch.equal(traced, ref) and torch.equal(program, ref)
    assert load_artifact(ts, trust_code=True).kind == "torchscript"
    assert load_artifact(pt2, trust_code=True).meta.quantized


def test_uncalibrated_and_low_bit_models_are_refused(models, tmp_path):
    model, _ = models
    with pytest.raises(QuantizationError, match="calibrate"):
        export_onnx(quantize_model(model, QuantRecipe()), tmp_path / "u.onnx")
    w4 = ptq(model, QuantRecipe(weight_bits=4, act_bits=4, calibrator="max"), [example_inputs(model, 4)])
    with pytest.raises(QuantizationError, match="W4A4"):
        export_onnx(w4, tmp_path / "w4.onnx")
    with pytest.raises(ExportError, match="opset 13"):
        export_onnx(model, tmp_path / "o.onnx", opset=13)
    assert not (tmp_path / "u.onnx").exists() and not list(tmp_path.glob(".*tmp"))


def test_quantized_checkpoint_round_trip(models, tmp_path):
    model, qmodel = models
    fp = LoadedCheckpoint(model, "dct_cifar_upsampling", ARCH_KWARGS, list("abcdefghij"), {})
    path = save_quantized(tmp_path / "q.pt", qmodel, fp)
    loaded = load_checkpoint(path)
    x = example_inputs(qmodel, 4, seed=9)
    with torch.no_grad():
        assert torch.equal(loaded.model(*x), qmodel(*x))
    art = load_artifact(path)
    assert art.kind == "checkpoint" and art.meta.quantized and art.class_names == tuple("abcdefghij")
    assert np.isclose(art.meta.recipe["version"], 1)


def test_export_artifact_dispatches_on_the_format_and_guards_the_checkpoint(models, tmp_path):
    """The library form of `dctq export`: default path from the format's suffix, the lint report for
    ONNX only, the JSON form the CLI prints, and no overwriting of the checkpoint."""
    model, qmodel = models
    fp = LoadedCheckpoint(model, "dct_cifar_upsampling", ARCH_KWARGS, list("abcdefghij"), {})
    ckpt = save_quantized(tmp_path / "q.pt", qmodel, fp)
    ts = export_artifact(ckpt, "torchscript")
    assert ts.artifact == tmp_path / "q.ts" and ts.artifact.is_file() and ts.lint is None
    assert ts.to_dict() == {
        "artifact": str(tmp_path / "q.ts"),
        "sidecar": str(sidecar_path(tmp_path / "q.ts")),
        "format": "torchscript",
        "quantized": True,
        "lint": None,
    }
    onnx_result = export_artifact(ckpt, "onnx", tmp_path / "out.onnx", static_batch=2, dynamo=False)
    assert onnx_result.lint.ok
    assert onnx_result.to_dict()["lint"] == onnx_result.lint.to_dict()
    assert load_artifact(onnx_result.artifact).meta.fixed_batch == 2
    with pytest.raises(DctqError, match="--format must be one of onnx, torchscript, program, tensorrt"):
        export_artifact(ckpt, "tflite")
    same = tmp_path / "q.pt2"  # a checkpoint named like the format's output
    same.write_bytes(ckpt.read_bytes())
    with pytest.raises(DctqError, match="would overwrite the checkpoint"):
        export_artifact(same, "program")
    assert set(FORMATS) == {"onnx", "torchscript", "program", "tensorrt", "triton"}


@pytest.mark.parametrize(
    ("fmt", "options", "message"),
    [
        ("onnx", {"out": "model.pt"}, r"--out .*model.pt: a onnx export must end in .onnx"),
        ("program", {"out": "model.onnx"}, r"a program export must end in .pt2"),
        ("onnx", {"static_batch": 0}, r"--static-batch must be >= 1"),
        ("program", {"static_batch": -2}, r"--static-batch must be >= 1"),
        ("tensorrt", {"max_batch": 0}, r"--max-batch must be >= 1"),
        ("onnx", {"out": "folder.onnx"}, r"--out .*folder.onnx is a folder"),
    ],
)
def test_export_refuses_bad_outputs_before_loading_anything(tmp_path, fmt, options, message):
    """An ONNX file named .pt would load as a checkpoint, batch 0 was silently 1, a folder failed after
    the export: each is refused before the checkpoint is even read (here: a file that is no checkpoint)."""
    (tmp_path / "folder.onnx").mkdir()
    if "out" in options:
        options = {**options, "out": tmp_path / options["out"]}
    not_read = tmp_path / "never-read.pt"
    not_read.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match=message):
        export_artifact(not_read, fmt, **options)
    assert not (tmp_path / "model.pt").exists() and not (tmp_path / "model.onnx").exists()


@pytest.mark.parametrize(
    ("opset", "message"), [(99, r"opset 99 does not exist .*use --opset 17\.\.\d+"), (16, "too old")]
)
def test_onnx_export_refuses_opsets_it_cannot_write(tmp_path, opset, message):
    """`export --opset 99` wrote opset 18 inside and 99 in the sidecar, exit 0."""
    with pytest.raises(ExportError, match=message):
        export_onnx(tiny_dct(), tmp_path / "m.onnx", opset=opset)
    assert not (tmp_path / "m.onnx").exists() and not sidecar_path(tmp_path / "m.onnx").exists()


def test_onnx_export_writes_the_opset_it_names(tmp_path):
    """Opset 17, which the dynamo exporter cannot convert to, comes from the TorchScript exporter; the
    sidecar, the graph and the request agree."""
    import onnx

    from dctq.deploy.onnx.graph import opset_of

    path = export_onnx(tiny_dct(), tmp_path / "m.onnx", opset=17)
    meta = json.loads(sidecar_path(path).read_text())
    assert opset_of(onnx.load(str(path))) == 17 == meta["opset"]
    assert meta["exporter"] == "torchscript"
    with pytest.raises(ExportError, match="could not write opset 17"):
        export_onnx(tiny_dct(), tmp_path / "d.onnx", opset=17, dynamo=True)


def test_deconv_front_folds_its_batchnorm_and_exports_lint_clean(tmp_path):
    """dct_cifar_deconv: the ConvTranspose block-to-space map absorbs its BN (weight axis 1), and the
    Q/DQ graph quantizes the ConvTranspose per output channel on axis 1, as TensorRT requires."""
    from dctq.calibration.quant.fold import find_conv_bn_pairs
    from dctq.deploy.onnx.lint import lint_qdq

    torch.manual_seed(1)
    model = create_model("dct_cifar_deconv", widths=[8, 16], depths=[1, 1], num_classes=3).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    assert ("front.upscale.0", "front.upscale.1") in find_conv_bn_pairs(model)
    qmodel = ptq(model, QuantRecipe(calibrator="max"), [example_inputs(model, 16, seed=s) for s in range(3)])
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in qmodel.modules())
    path = export_onnx(qmodel, tmp_path / "d.onnx")
    graph = onnx.load(str(path)).graph
    deconv = [n for n in graph.node if n.op_type == "ConvTranspose"]
    assert len(deconv) == 1
    report = lint_qdq(path)
    assert report.ok and not report.violations, report.violations
    x = example_inputs(qmodel, 64, seed=5)
    with torch.no_grad():
        ref = qmodel(*x)
    assert sqnr_db(ref, run_ort(path, x)) > 30.0


def test_export_prints_no_exporter_noise(tmp_path, capfd):
    """`dctq export` printed torch's "torchvision is not installed" log lines (on every export) and pytree
    FutureWarnings on stderr."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export_onnx(tiny_dct(), tmp_path / "m.onnx", dynamo=True)
    assert capfd.readouterr().err == ""
    assert [w for w in caught if issubclass(w.category, FutureWarning | DeprecationWarning)] == []
