"""`dctq env`: what the installation found, for people and for scripts."""

from __future__ import annotations

import json

import torch
from typer.testing import CliRunner

from dctq import __version__
from dctq.cli.main import app
from dctq.jpeg import decoders
from dctq.jpeg.reader import available_backends

runner = CliRunner()


def test_env_json_reports_the_reader_torch_and_runtimes():
    result = runner.invoke(app, ["env", "--json"])
    assert result.exit_code == 0, result.output
    env = json.loads(result.stdout)
    assert env["dctq"] == __version__ and env["torch"] == torch.__version__
    assert env["jpeg_readers"] == available_backends() and env["jpeg_reader"] == available_backends()[0]
    assert env["fast_reader"] == ("turbo" in available_backends())
    assert env["cuda"] == torch.cuda.is_available()
    assert set(env["packages"]) == {"jpeglib", "onnx", "onnxscript", "onnxruntime", "tensorrt"}
    ort = env["packages"]["onnxruntime"]
    assert ort["version"] is None or "CPUExecutionProvider" in ort["note"]
    trt = env["packages"]["tensorrt"]
    assert trt["version"] is not None or trt["note"] == "pip install 'dctq[tensorrt]' (NVIDIA GPU)"


def test_env_table_names_the_slow_reader_and_the_fix(monkeypatch):
    monkeypatch.setattr(decoders, "_turbo", None)
    result = runner.invoke(app, ["env"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "slow: the jpeglib package, 10-40x slower" in result.stdout
    assert "libjpeg62-turbo-dev" in result.stdout
    # The extras' brackets survive Rich's markup (an install hint is shown for whatever is missing).
    for name, package in json.loads(runner.invoke(app, ["env", "--json"]).stdout)["packages"].items():
        if package["version"] is None:
            assert f"{name}" in result.stdout and package["note"] in result.stdout
