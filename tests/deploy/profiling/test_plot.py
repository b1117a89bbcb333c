"""Plots: the format follows the extension (an SVG is SVG text, a PDF a PDF), several profiles overlaid with
the p90-p99 band, real tick values, through matplotlib and through the Pillow/SVG fallback alike."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import pytest
from PIL import Image
from typer.testing import CliRunner

from dctq.common.errors import DctqError
from dctq.deploy.profiling.latency import ProfileReport
from dctq.deploy.profiling.plot import (
    COLORS,
    Panel,
    Series,
    nice_ticks,
    plot_engine,
    plot_format,
    plot_profiles,
    profile_panels,
    save_figure,
    tick_label,
)

ENGINES = [
    "pillow",
    pytest.param(
        "matplotlib", marks=pytest.mark.skipif(plot_engine() != "matplotlib", reason="no matplotlib")
    ),
]


def report(name: str, scale: float, backend: str = "ort") -> ProfileReport:
    rows = []
    for batch in (1, 8, 32):
        p50 = scale * (0.2 + 0.05 * batch)
        rows.append(
            {"batch": batch, "iters": 10, "p50_ms": p50, "p90_ms": 1.1 * p50, "p99_ms": 1.4 * p50,
             "mean_ms": p50, "min_ms": 0.9 * p50, "peak_mem_mb": None, "peak_rss_delta_mb": None}
        )  # fmt: skip
    return ProfileReport.from_dict(
        {"artifact": name, "backend": backend, "device": "cpu", "end_to_end": False, "rows": rows}
    )


def test_nice_ticks_are_round_and_cover_the_range():
    assert nice_ticks(0, 9.3) == [0, 2, 4, 6, 8, 10]
    assert nice_ticks(0, 42_000) == [0, 10_000, 20_000, 30_000, 40_000, 50_000]
    assert nice_ticks(0.0, 0.37)[:3] == [0.0, 0.1, 0.2] and nice_ticks(0, 0.37)[-1] >= 0.37
    assert [tick_label(v) for v in (0.25, 8.0, 20_000)] == ["0.25", "8", "20k"]


def test_the_extension_decides_the_format():
    assert [plot_format(f"a.{e}") for e in ("png", "SVG", "pdf")] == ["png", "svg", "pdf"]
    with pytest.raises(DctqError, match=r"\.png, \.svg, \.pdf"):
        plot_format("a.jpg")
    with pytest.raises(DctqError, match="engine"):
        plot_engine("gnuplot")


@pytest.mark.parametrize("engine", ENGINES)
def test_every_format_is_written_as_itself(tmp_path, engine):
    reports = [report("fp32.onnx", 1.0), report("int8.onnx", 0.4)]
    svg = plot_profiles(reports, tmp_path / "p.svg", engine=engine)
    text = svg.read_text()
    root = ET.fromstring(text)  # well-formed SVG text, not PNG bytes
    assert root.tag.endswith("svg") and not svg.read_bytes().startswith(b"\x89PNG")
    assert plot_profiles(reports, tmp_path / "p.pdf", engine=engine).read_bytes().startswith(b"%PDF")
    png = plot_profiles(reports, tmp_path / "p.png", engine=engine)
    with Image.open(png) as img:
        assert img.format == "PNG" and img.width > img.height
        rgb = img.convert("RGB")
        colours = {c for _, c in rgb.getcolors(maxcolors=1 << 20)}
    # Both artifacts are drawn: the first two series colours are on the image, as lines.
    for hex_colour in COLORS[:2]:
        target = tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
        assert any(sum(abs(a - b) for a, b in zip(c, target, strict=True)) < 30 for c in colours)


def test_fallback_svg_has_ticks_units_band_and_legend(tmp_path):
    reports = [report("int8.onnx", 0.4, "ort"), report("int8.engine", 0.1, "tensorrt")]
    text = plot_profiles(reports, tmp_path / "p.svg", engine="pillow").read_text()
    labels = re.findall(r">([^<]+)</text>", text)
    assert {"1", "8", "32"} <= set(labels)  # the batch axis ticked at the measured sizes
    assert "latency (ms)" in labels and "throughput (images/s)" in labels and "batch size (images)" in labels
    assert "int8.onnx (ort) p50" in labels and "int8.engine (tensorrt) p90-p99" in labels
    assert text.count("<polygon") >= 4  # two bands in the chart, two in the legend
    y_ticks = [float(v) for v in labels if re.fullmatch(r"\d+(\.\d+)?", v)]
    assert 0.0 in y_ticks and len(y_ticks) >= 8


def test_profile_panels_overlay_reports_with_their_bands():
    latency, throughput = profile_panels([report("a.onnx", 1.0), report("b.onnx", 0.5)])
    assert [s.label for s in latency.series] == ["a.onnx p50", "b.onnx p50"]
    assert all(s.low is not None and s.high is not None for s in latency.series)
    assert latency.log2_x and latency.xticks == (1.0, 8.0, 32.0) and latency.ylabel == "latency (ms)"
    assert throughput.series[0].y[0] == pytest.approx(1 / (0.25e-3))


def test_save_figure_draws_line_charts(tmp_path):
    panel = Panel(
        "top-1 per quality", "JPEG quality", "top-1 (%)", (Series("fp32", (10, 50, 90), (40, 70, 80)),)
    )
    out = save_figure([panel], tmp_path / "q.png", engine="pillow")
    assert out.read_bytes().startswith(b"\x89PNG")
    with pytest.raises(DctqError, match="nothing to plot"):
        save_figure([], tmp_path / "x.png")


def test_profile_command_overlays_fp32_and_int8_and_keeps_the_format(tmp_path):
    pytest.importorskip("onnxruntime")
    from helpers import tiny_dct

    from dctq.calibration.ptq import ptq
    from dctq.calibration.quant.recipe import QuantRecipe
    from dctq.cli.main import app
    from dctq.deploy.export.onnx import export_onnx
    from dctq.models import example_inputs

    model = tiny_dct()
    qmodel = ptq(model, QuantRecipe(calibrator="max"), [example_inputs(model, 8, seed=s) for s in range(2)])
    fp32 = export_onnx(model, tmp_path / "fp32.onnx", dynamo=False)
    int8 = export_onnx(qmodel, tmp_path / "int8.onnx", dynamo=False)
    runner = CliRunner()
    args = ["profile", str(fp32), str(int8), "--batch", "1,4", "--iters", "3", "--warmup", "1"]
    result = runner.invoke(app, [*args, "--plot", str(tmp_path / "x.svg"), "--out", str(tmp_path / "p.json")])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "x.svg").read_text()
    assert text.lstrip().startswith(("<svg", "<?xml")) and "int8.onnx" in text
    saved = [ProfileReport.from_dict(d) for d in json.loads((tmp_path / "p.json").read_text())]
    assert [r.artifact for r in saved] == [str(fp32), str(int8)]
    assert [[row.batch for row in r.rows] for r in saved] == [[1, 4], [1, 4]]
    bad = runner.invoke(app, ["profile", str(fp32), "--plot", str(tmp_path / "x.gif")])
    assert bad.exit_code == 1 and ".svg" in bad.output


@pytest.mark.parametrize("engine", ENGINES)
def test_a_flat_line_at_the_axis_cap_still_gets_an_axis(tmp_path, engine):
    # Top-5 of 100 % at every quality: the axis opens below the line and stops at 100.
    flat = Panel(
        "top5",
        "JPEG quality",
        "accuracy (%)",
        (Series("a", (20, 50), (100.0, 100.0)),),
        y_from_zero=False,
        y_max=100.0,
    )
    out = save_figure([flat], tmp_path / "flat.svg", engine=engine)
    if engine == "pillow":
        labels = re.findall(r">([^<]+)</text>", out.read_text())
        assert "100" in labels and "101" not in labels and "95" in labels
