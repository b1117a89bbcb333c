"""`dctq export --format tensorrt` without TensorRT: one clear line naming the extra, nothing written."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from typer.testing import CliRunner

from dctq.cli.main import app
from dctq.models.checkpoint import save_checkpoint
from dctq.models.registry import create_model


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_export_tensorrt_says_how_to_install(tmp_path):
    torch.manual_seed(0)
    ckpt = save_checkpoint(
        tmp_path / "m.pt",
        create_model("resnet20", num_classes=3),
        arch="resnet20",
        arch_kwargs={"num_classes": 3},
        class_names=["a", "b", "c"],
    )
    result = CliRunner().invoke(
        app, ["export", str(ckpt), "--format", "tensorrt", "--out", str(tmp_path / "m.engine")]
    )
    assert result.exit_code == 1
    assert "pip install 'dctq[tensorrt]'" in result.output
    assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]
