"""Latency profiling (model only and end to end), its plot, and smoke tests of export/check/predict/profile."""

from __future__ import annotations

import json

import pytest
import torch
import typer
from PIL import Image
from typer.testing import CliRunner

from dctq.calibration.ptq import ptq
from dctq.calibration.quant.checkpoint import save_quantized
from dctq.calibration.quant.recipe import QuantRecipe
from dctq.cli import check_cmd, export_cmd, predict_cmd, profile_cmd
from dctq.common.errors import DataError, DctqError
from dctq.deploy.artifact import load_artifact
from dctq.deploy.export.onnx import export_onnx
from dctq.deploy.profiling.cuda import ProfileRow
from dctq.deploy.profiling.latency import BatchProfile, Latency, ProfileReport, profile, synthetic_batch
from dctq.deploy.profiling.plot import plot_profile
from dctq.models import create_model, example_inputs
from dctq.models.checkpoint import LoadedCheckpoint

pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
pytest.importorskip("onnxruntime")

ARCH_KWARGS = {"num_classes": 2, "widths": [8, 16], "depths": [1, 1]}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("dct_cifar_upsampling", **ARCH_KWARGS).eval()
    qmodel = ptq(model, QuantRecipe(calibrator="max"), [example_inputs(model, 8, seed=s) for s in range(2)])
    out = tmp_path_factory.mktemp("profile")
    fp = LoadedCheckpoint(model, "dct_cifar_upsampling", ARCH_KWARGS, ["cat", "dog"], {})
    return save_quantized(out / "q.pt", qmodel, fp)


def test_synthetic_batch_has_the_artifact_shapes(checkpoint):
    batch = synthetic_batch(load_artifact(checkpoint).meta, 3)
    assert {k: v.shape for k, v in batch.items()} == {
        "y": (3, 64, 4, 4),
        "cbcr": (3, 128, 2, 2),
        "qt": (3, 3, 64),
    }
    assert (batch["y"] == batch["y"].round()).all() and batch["qt"].min() == 1


def test_profile_reports_percentiles_throughput_and_memory(checkpoint, tmp_path, jpeg_folder):
    onnx_path = export_onnx(load_artifact(checkpoint).checkpoint, tmp_path / "q.onnx", dynamo=False)
    report = profile(onnx_path, batches=(1, 4), warmup=1, iters=5, threads=1)
    assert report.backend == "ort" and report.device == "cpu" and not report.end_to_end
    assert [r.batch for r in report.rows] == [1, 4]
    for r in report.rows:
        assert 0 < r.min_ms <= r.p50_ms <= r.p90_ms <= r.p99_ms
        assert r.throughput == pytest.approx(r.batch / (r.p50_ms / 1000))
        assert r.peak_mem_mb > 10 and r.peak_rss_delta_mb >= 0
    e2e = profile(checkpoint, "torch", (2,), warmup=1, iters=3, end_to_end_data=jpeg_folder, device="cpu")
    assert e2e.end_to_end and e2e.backend == "torch" and e2e.rows[0].iters == 3
    assert ProfileReport.from_dict(report.to_dict()) == report  # what `dctq profile --out` writes reads back
    png = plot_profile(report, tmp_path / "p.png")
    with Image.open(png) as img:
        assert img.format == "PNG"
        low, high = img.convert("L").getextrema()
        assert low < 100 and high == 255  # dark strokes on white


def test_both_profilers_share_one_latency_type_and_keep_their_json_names():
    latency = Latency.of([1.0, 2.0, 3.0, 4.0])
    row = BatchProfile(batch=8, iters=4, latency=latency, peak_mem_mb=None, peak_rss_delta_mb=None)
    assert list(row.to_dict()) == [
        "batch", "iters", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "min_ms", "throughput", "peak_mem_mb",
        "peak_rss_delta_mb",
    ]  # fmt: skip
    assert row.p50_ms == 2.5 and row.throughput == latency.rate(8) == pytest.approx(3200.0)
    cuda_row = ProfileRow(batch=8, h2d=latency, compute=latency, d2h=latency, total=latency, h2d_bytes=1)
    assert cuda_row.images_per_second == row.throughput and cuda_row.to_dict()["total"]["p50"] == 2.5


def test_profile_rejects_bad_arguments(checkpoint, tmp_path):
    with pytest.raises(DctqError, match="batches must be"):
        profile(checkpoint, batches=(0,))
    with pytest.raises(DataError, match=r"no \.jpg"):
        profile(checkpoint, batches=(1,), end_to_end_data=tmp_path)


def _app() -> typer.Typer:
    app = typer.Typer()
    for module in (export_cmd, check_cmd, predict_cmd, profile_cmd):
        module.register(app)
    return app


def test_cli_export_check_predict_profile(checkpoint, tmp_path, jpeg_folder):
    app, runner = _app(), CliRunner()
    target = tmp_path / "model.onnx"
    # the TorchScript exporter keeps this smoke test fast; test_export.py covers the dynamo exporter
    args = [
        "export",
        str(checkpoint),
        "--format",
        "onnx",
        "--out",
        str(target),
        "--legacy-exporter",
        "--json",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    exported = json.loads(result.stdout)
    assert exported["quantized"] and exported["lint"]["ok"] and target.is_file()
    assert runner.invoke(app, ["check", str(target)]).exit_code == 0

    images = [str(p) for p in sorted(jpeg_folder.rglob("*.jpg"))[:3]]
    result = runner.invoke(app, ["predict", str(target), *images, "--top-k", "2", "--json"])
    assert result.exit_code == 0, result.output
    predictions = json.loads(result.stdout)
    assert [p["path"] for p in predictions] == images
    assert all(p["label"] in ("cat", "dog") and len(p["top"]) == 2 for p in predictions)

    plot = tmp_path / "prof.png"
    args = [
        "profile",
        str(target),
        "--batch",
        "1,2",
        "--iters",
        "2",
        "--warmup",
        "1",
        "--json",
        "--plot",
        str(plot),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert [r["batch"] for r in json.loads(result.stdout)["rows"]] == [1, 2] and plot.is_file()

    ts = tmp_path / "model.ts"
    assert (
        runner.invoke(app, ["export", str(checkpoint), "--format", "torchscript", "--out", str(ts)]).exit_code
        == 0
    )
    assert runner.invoke(app, ["predict", str(ts), images[0]]).exit_code == 1  # code: needs --trust-code
    assert runner.invoke(app, ["predict", str(ts), images[0], "--trust-code"]).exit_code == 0


def test_cli_errors_exit_with_code_1(checkpoint, tmp_path):
    app, runner = _app(), CliRunner()
    bad_format = runner.invoke(app, ["export", str(checkpoint), "--format", "tflite"])
    assert bad_format.exit_code == 1 and "--format" in bad_format.output
    missing = runner.invoke(app, ["predict", str(tmp_path / "none.onnx"), str(tmp_path / "x.jpg")])
    assert missing.exit_code == 1 and "not found" in missing.output
    bad_batch = runner.invoke(app, ["profile", str(checkpoint), "--batch", "1,x"])
    assert bad_batch.exit_code == 1 and "--batch" in bad_batch.output
