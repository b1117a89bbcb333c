"""`dctq compare`: outputs and layers of two artifacts on the same inputs, tolerances as a CI gate."""

from __future__ import annotations

import json
import math

import pytest
import torch
import typer
from helpers import tiny_dct
from typer.testing import CliRunner

from dctq.calibration.ptq import ptq
from dctq.calibration.quant.checkpoint import save_quantized
from dctq.calibration.quant.recipe import QuantRecipe
from dctq.cli import compare_cmd
from dctq.common.errors import DctqError, UntrustedArtifactError
from dctq.deploy.compare.metrics import Accumulator, Tolerances
from dctq.deploy.compare.run import compare_artifacts
from dctq.deploy.compare.taps import TorchTap, layer_names
from dctq.deploy.export.formats import export_artifact
from dctq.models.checkpoint import load_checkpoint, save_checkpoint
from dctq.models.flops import example_inputs

pytest.importorskip("onnxruntime")
KWARGS = {"widths": [8, 16], "depths": [1, 1]}
runner = CliRunner()


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def root() -> None:
        """Group, so that `compare` is a sub-command as under `dctq`."""

    compare_cmd.register(app)
    return app


APP = _app()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """fp.pt, q.pt (INT8 PTQ), q.onnx (its Q/DQ export) and fp.onnx of a tiny DCT net."""
    root = tmp_path_factory.mktemp("compare")
    model = tiny_dct()
    classes = [str(i) for i in range(10)]
    fp_path = save_checkpoint(
        root / "fp.pt", model, arch="dct_cifar_upsampling", arch_kwargs=KWARGS, class_names=classes
    )
    fp = load_checkpoint(fp_path)
    qmodel = ptq(model, QuantRecipe(calibrator="max"), [example_inputs(model, 8, seed=s) for s in range(3)])
    q_path = save_quantized(root / "q.pt", qmodel, fp)
    export_artifact(q_path, "onnx", root / "q.onnx")
    export_artifact(fp_path, "onnx", root / "fp.onnx")
    return root


def test_metrics_by_hand():
    acc = Accumulator()
    acc.add(torch.tensor([[3.0, 4.0], [1.0, 0.0]]), torch.tensor([[3.0, 0.0], [1.0, 0.0]]))
    r = acc.result("x")
    assert r.sqnr_db == pytest.approx(10 * math.log10(26 / 16))
    assert (r.cosine_min, r.cosine_mean) == (pytest.approx(0.6), pytest.approx(0.8))
    assert (r.max_abs_diff, r.mean_abs_diff, r.agreement) == (4.0, 1.0, 0.5)
    same = Accumulator()
    same.add(torch.ones(2, 3, 4), torch.ones(2, 3, 4))
    s = same.result("y")
    assert s.sqnr_db == math.inf and s.agreement is None and s.cosine_min == pytest.approx(1.0)
    failed = r.checked(Tolerances(min_sqnr_db=10, min_cosine=0.9, max_abs_diff=1, min_agreement=0.5))
    assert len(failed.failures) == 3 and not failed.passed  # agreement is met


def test_the_quantized_checkpoint_and_its_onnx_agree_layer_by_layer(artifacts):
    report = compare_artifacts(
        artifacts / "q.pt",
        artifacts / "q.onnx",
        layers=True,
        images=16,
        tolerances=Tolerances(min_sqnr_db=35),
    )
    assert report.passed and report.backends == ("torch", "ort")
    (out,) = report.outputs
    assert out.sqnr_db > 35 and out.agreement == 1.0 and out.samples == 16
    names = {x.name for x in report.layers}
    assert {"stages.0.0.conv1", "stages.0.0.add", "stages.1.0.act2", "fc"} <= names and not report.unmatched
    assert [x.sqnr_db for x in report.layers] == sorted(x.sqnr_db for x in report.layers)


def test_float_and_quantized_line_up_through_folded_batchnorm(artifacts):
    """The FP model's conv1 -> bn1 is one conv in the quantized model; both are keyed conv1."""
    fp, q = load_checkpoint(artifacts / "fp.pt").model, load_checkpoint(artifacts / "q.pt").model
    assert layer_names(fp)["stages.0.0.bn1"] == "stages.0.0.conv1" and "stages.0.0.conv1" not in layer_names(
        fp
    )
    x = dict(zip(("y", "cbcr", "qt"), example_inputs(fp, 2), strict=True))
    (_, a), (_, b) = TorchTap(fp).run(x), TorchTap(q).run(x)
    assert set(a) == set(b)
    float_onnx = compare_artifacts(artifacts / "fp.pt", artifacts / "fp.onnx", layers=True, images=8)
    assert min(x.sqnr_db for x in float_onnx.layers) > 80 and len(float_onnx.layers) == len(a)
    quantized = compare_artifacts(artifacts / "fp.onnx", artifacts / "q.onnx", layers=True, images=8)
    assert {x.name for x in quantized.layers} == set(a)


def test_a_broken_tolerance_fails_the_command(artifacts, tmp_path):
    out = tmp_path / "r.json"
    args = ["compare", str(artifacts / "fp.pt"), str(artifacts / "q.pt"), "--images", "8", "--min-sqnr", "90",
            "--min-agreement", "50", "--out", str(out)]  # fmt: skip
    result = runner.invoke(APP, args)
    assert result.exit_code == 1
    assert "compare failed" in result.output and "SQNR" in result.output
    saved = json.loads(out.read_text())
    assert saved["passed"] is False and saved["outputs"][0]["failures"][0].startswith("SQNR")
    ok = runner.invoke(APP, ["compare", str(artifacts / "q.pt"), str(artifacts / "q.onnx"), "--images", "8",
                             "--min-sqnr", "30", "--layers", "--json"])  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["passed"] is True and json.loads(ok.output)["layers"]


def test_data_folders_and_clear_errors(artifacts, jpeg_folder, tmp_path):
    report = compare_artifacts(artifacts / "fp.pt", artifacts / "q.pt", data=jpeg_folder, images=100)
    assert report.images == 8 and "JPEGs of" in report.data
    (tmp_path / "empty").mkdir()
    with pytest.raises(DctqError, match="no JPEG files"):
        compare_artifacts(artifacts / "fp.pt", artifacts / "q.pt", data=tmp_path / "empty")
    export_artifact(artifacts / "q.pt", "torchscript", tmp_path / "q.ts")
    with pytest.raises(DctqError, match="--layers compares PyTorch checkpoints"):
        compare_artifacts(artifacts / "q.pt", tmp_path / "q.ts", layers=True, images=2, trust_code=True)
    with pytest.raises(UntrustedArtifactError, match="--trust-code"):  # code: refused before it is loaded
        compare_artifacts(artifacts / "q.pt", tmp_path / "q.ts", images=2)
    rgb = save_checkpoint(
        tmp_path / "rgb.pt",
        __import__("dctq").create_model("resnet20"),
        arch="resnet20",
        arch_kwargs={},
        class_names=[],
    )
    with pytest.raises(DctqError, match="same model"):
        compare_artifacts(artifacts / "fp.pt", rgb, images=2)
