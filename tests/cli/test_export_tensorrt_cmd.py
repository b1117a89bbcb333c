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
