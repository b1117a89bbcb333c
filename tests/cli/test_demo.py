"""The built-in demo runs every stage end to end (tiny settings) and its numbers hang together."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from dctq.cli.demo_pipeline import run_demo
from dctq.cli.main import app


def test_demo_pipeline_end_to_end(tmp_path):
    stages: list[str] = []
    report = run_demo(tmp_path / "demo", epochs=1, per_class=12, stage=stages.append)
    assert stages[0].startswith("writing") and any("ONNX Runtime" in s for s in stages)
    for path in (report.fp32_checkpoint, report.int8_checkpoint, report.onnx):
        assert path.is_file() and path.stat().st_size > 0
    assert report.lint_errors == 0
    # ONNX Runtime runs the same quantized function as the fake-quant model: per quality, the two
    # may differ only where a logit tie flips under rounding (at most one image here).
    for torch_row, ort_row in zip(report.int8_torch.rows, report.int8_ort.rows, strict=True):
        assert torch_row.quality == ort_row.quality and torch_row.images == ort_row.images > 0
        assert abs(torch_row.top1 - ort_row.top1) * torch_row.images <= 1.0
    assert [r.batch for r in report.ort_profile.rows] == [1, 8, 32]
    as_json = json.loads(json.dumps(report.to_dict()))  # what `dctq demo --json` prints
    assert as_json["lint"]["errors"] == 0


def test_demo_refuses_an_existing_run(tmp_path):
    out = tmp_path / "demo"
    (out / "fp32").mkdir(parents=True)
    (out / "fp32" / "last.pt").write_bytes(b"an earlier run")
    again = CliRunner().invoke(app, ["demo", "--out", str(out), "--epochs", "1", "--per-class", "8"])
    assert again.exit_code == 1
    assert "already holds a demo run" in again.output
    assert sorted(p.name for p in out.rglob("*")) == ["fp32", "last.pt"]  # nothing else written
