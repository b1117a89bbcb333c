"""`dctq report RUN_DIR` renders the demo's run: training curves, the quantizer table, accuracy per quality,
the TensorRT Q/DQ check, the FP32 vs INT8 latency profile, each plot a real image file."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from dctq.cli.main import app
from dctq.common.errors import DataError, DctqError
from dctq.common.records import read_metrics
from dctq.deploy.report import epoch_panels, render_report

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def demo(tiny_demo):
    """The demo's run at tiny settings (conftest.tiny_demo): its INT8 checkpoint, the toy JPEGs, the Q/DQ ONNX."""
    return tiny_demo


def test_the_demo_leaves_its_run_records(demo):
    out = demo.out
    epochs = read_metrics(out / "fp32" / "metrics.csv")
    assert [r["epoch"] for r in epochs] == [1, 2] and {"train_loss", "val_top1", "lr"} <= set(epochs[0])
    quantizers = read_metrics(out / "int8.metrics.csv")
    assert quantizers and all(r["bits"] == 8 for r in quantizers)
    fp32 = read_metrics(out / "eval" / "fp32.metrics.csv")
    assert [r["quality"] for r in fp32] == [20, 50, 90]
    assert [r["top1"] for r in fp32] == [r.top1 for r in demo.fp32.rows]
    profiles = json.loads((out / "profile.profile.json").read_text())
    assert [p["artifact"].rsplit("/", 1)[-1] for p in profiles] == ["fp32.onnx", "int8.onnx"]


def test_report_renders_the_demo_run(demo, tmp_path):
    report = render_report(demo.out, tmp_path / "page" / "report.md")
    text = report.page.read_text()
    for heading in (
        "## Training: `fp32/metrics.csv`",
        "## Quantizers: `int8.metrics.csv`",
        "## Accuracy per JPEG quality",
        "## TensorRT Q/DQ check",
        "## Latency profile",
    ):
        assert heading in text
    # Every image the page links exists, as a PNG.
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(links) == len(report.plots) == 3
    for link in links:
        assert (report.page.parent / link).read_bytes().startswith(b"\x89PNG")
    assert "| `int8.onnx` | " in text and "| `fp32.onnx` | 0 / 0 |" in text
    q = demo.fp32.rows
    assert f"| `eval/fp32` | {100 * q[0].top1:.1f}% |" in text
    assert "`int8.onnx` on ort (cpu), model only:" in text


def test_report_command_writes_svg_plots(demo, tmp_path):
    page = tmp_path / "svg" / "r.md"
    result = CliRunner().invoke(app, ["report", str(demo.out), "--out", str(page), "--plot-format", "svg"])
    assert result.exit_code == 0, result.output
    plots = sorted((tmp_path / "svg" / "r").iterdir())
    assert plots and all(
        p.suffix == ".svg" and p.read_text().lstrip().startswith(("<svg", "<?xml")) for p in plots
    )
    bad = CliRunner().invoke(app, ["report", str(demo.out), "--plot-format", "gif"])
    assert bad.exit_code == 1 and "png, svg, pdf" in bad.output


def test_report_refuses_folders_without_records(tmp_path):
    with pytest.raises(DataError, match="not a folder"):
        render_report(tmp_path / "none")
    with pytest.raises(DataError, match=r"holds no metrics\.csv"):
        render_report(tmp_path)
    with pytest.raises(DctqError, match="plot-format"):
        render_report(tmp_path, plot_format="jpg")


def test_epoch_panels_follow_the_columns_a_task_reports():
    rows = [
        {"epoch": 1, "train_loss": 1.0, "val_psnr": 28.0, "val_top1": None, "seconds": 3.0, "val_images": 8},
        {"epoch": 2, "train_loss": 0.5, "val_psnr": 29.5, "val_top1": None, "seconds": 3.0, "val_images": 8},
    ]
    panels = epoch_panels(rows)
    assert [p.title for p in panels] == ["loss", "other metrics"]
    assert [s.label for s in panels[1].series] == ["val_psnr"] and panels[1].series[0].y == (28.0, 29.5)
