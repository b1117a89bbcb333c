"""`dctq export --format tensorrt` without TensorRT: one clear line naming the extra, nothing written."""

from __future__ import annotations

import importlib.util

import pytest
from helpers import saved_model
from typer.testing import CliRunner

from dctq.cli.main import app


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_export_tensorrt_says_how_to_install(tmp_path):
    _, ckpt = saved_model(tmp_path / "m.pt", "resnet20", ["a", "b", "c"], num_classes=3)
    result = CliRunner().invoke(
        app, ["export", str(ckpt), "--format", "tensorrt", "--out", str(tmp_path / "m.engine")]
    )
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ") and "pip install 'dctq[tensorrt]'" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_export_an_onnx_file_to_tensorrt_says_how_to_install(tmp_path):
    """`dctq export model.onnx --format tensorrt` builds from the ONNX file (tested with a fake TensorRT in
    tests/deploy/backends/tensorrt/test_fake_bindings.py); here, without TensorRT, one line and no file."""
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"not read before TensorRT is found")
    result = CliRunner().invoke(app, ["export", str(onnx_file), "--format", "tensorrt"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "pip install 'dctq[tensorrt]'" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
    other = CliRunner().invoke(app, ["export", str(onnx_file), "--format", "onnx"])
    assert other.exit_code == 1 and "exports to --format tensorrt only" in other.output
