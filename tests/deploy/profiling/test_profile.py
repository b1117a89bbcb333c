"""Latency profiling (model only and end to end), its plot, and smoke tests of export/check/predict/profile."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from dctq.calibration.ptq import ptq
from dctq.calibration.quant.checkpoint import save_quantized
from dctq.calibration.quant.recipe import QuantRecipe
from dctq.cli.main import app
from dctq.common.errors import ConfigError, DataError, DctqError
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
    with pytest.raises(DctqError, match="--batch sizes and --iters must be >= 1"):
        profile(checkpoint, batches=(0,))
    with pytest.raises(DataError, match=r"no \.jpg"):
        profile(checkpoint, batches=(1,), end_to_end_data=tmp_path)
    with pytest.raises(ConfigError, match="the tensorrt backend has none"):
        profile(checkpoint, "tensorrt", batches=(1,), threads=2)
    with pytest.raises(ConfigError, match="--threads must be >= 1"):
        profile(checkpoint, batches=(1,), threads=0)


def test_threads_apply_to_the_torch_backend_and_are_restored(checkpoint):
    """`profile --threads N` with the torch backend was a TypeError traceback."""
    before = torch.get_num_threads()
    seen = []

    class Spy(torch.nn.Module):  # records torch's thread count while the profiled calls run
        def forward(self, *args):
            seen.append(torch.get_num_threads())
            return torch.zeros(args[0].shape[0], 2)

    art = load_artifact(checkpoint)
    art.checkpoint.model.forward = Spy().forward
    wanted = 2 if before != 2 else 3
    report = profile(art, "torch", (1,), warmup=1, iters=2, threads=wanted, device="cpu")
    assert report.backend == "torch" and set(seen) == {wanted}
    assert torch.get_num_threads() == before


def test_fake_quant_on_torch_is_marked_simulated(checkpoint, tmp_path):
    """A quantized .pt on the torch backend runs fake-quant ops in float: its timings were shown as if
    they were INT8 speed."""
    runner = CliRunner()
    args = ["profile", str(checkpoint), "--batch", "1", "--iters", "2", "--warmup", "0"]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["simulated_int8"] is True
    assert "not INT8 speed" in result.stderr
    table = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert "SIMULATED INT8" in table.stdout and "process MB" in table.stdout and "+MB" in table.stdout
    onnx_path = export_onnx(load_artifact(checkpoint).checkpoint, tmp_path / "q.onnx", dynamo=False)
    assert profile(onnx_path, batches=(1,), warmup=0, iters=1).simulated_int8 is False


def test_cli_export_check_predict_profile(checkpoint, tmp_path, jpeg_folder):
    runner = CliRunner()
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
    assert exported["artifact"] == str(target) and exported["sidecar"] == str(target) + ".json"
    checked = runner.invoke(app, ["check", str(target)], env={"COLUMNS": "200"})
    assert checked.exit_code == 0, checked.output
    assert checked.stdout.startswith(f"{target}: opset 18, ") and checked.stdout.rstrip().endswith(
        "0 error(s), 0 warning(s) ok"
    )

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
