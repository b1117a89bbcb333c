"""`dctq predict` through the real app: the top-k column, and ONNX files without a sidecar (dctq's own
inputs are read by name and shape; anything else is a one-line error, never a traceback)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import tiny_dct
from typer.testing import CliRunner

from dctq.cli.main import app
from dctq.deploy.artifact import sidecar_path
from dctq.deploy.export.onnx import export_onnx
from dctq.models.checkpoint import save_checkpoint

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402

runner = CliRunner()


@pytest.fixture
def checkpoint(tmp_path):
    model = tiny_dct(num_classes=4)
    names = ["ant", "bee", "cat", "dog"]
    return save_checkpoint(tmp_path / "m.pt", model, arch="dct_cifar_upsampling",
                           arch_kwargs={"widths": [8, 16], "depths": [1, 1], "num_classes": 4},
                           class_names=names)  # fmt: skip


def test_top_k_column_lists_k_classes_best_first(checkpoint, make_jpeg):
    image = make_jpeg("a.jpg")
    table = runner.invoke(
        app, ["predict", str(checkpoint), str(image), "--top-k", "3"], env={"COLUMNS": "200"}
    )
    assert table.exit_code == 0, table.output
    found = runner.invoke(app, ["predict", str(checkpoint), str(image), "--top-k", "3", "--json"])
    top = json.loads(found.stdout)[0]["top"]
    assert len(top) == 3
    listed = ", ".join(f"{t['label']} {t['probability']:.3f}" for t in top)
    assert "top 3" in table.stdout and listed in table.stdout  # the best class first, then the other two


def _graph(inputs, outputs, nodes=()):
    graph = helper.make_graph(list(nodes), "g", inputs, outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _value(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


FOREIGN = {
    "scalar input": _graph(
        [_value("x", [])], [_value("out", [])], [helper.make_node("Identity", ["x"], ["out"])]
    ),
    "matrix input": _graph(
        [_value("x", ["n", 10])], [_value("out", ["n", 10])], [helper.make_node("Relu", ["x"], ["out"])]
    ),
    "no inputs": _graph([], []),
    "dynamic image size": _graph(
        [_value("x", ["n", 3, "h", "w"])],
        [_value("out", ["n", 3])],
        [helper.make_node("ReduceMean", ["x"], ["out"])],
    ),
    "4-d logits": _graph(
        [_value("x", ["n", 3, 32, 32])],
        [_value("out", ["n", 3, 32, 32])],
        [helper.make_node("Relu", ["x"], ["out"])],
    ),
}


@pytest.mark.parametrize("case", sorted(FOREIGN))
def test_foreign_onnx_without_sidecar_is_one_line(tmp_path, make_jpeg, case):
    """A scalar input crashed the reader of the graph's inputs with an IndexError traceback."""
    path = tmp_path / "foreign.onnx"
    onnx.save(FOREIGN[case], str(path))
    result = runner.invoke(app, ["predict", str(path), str(make_jpeg("a.jpg"))])
    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: {path} has no sidecar foreign.onnx.json and its ")
    assert "`dctq export`" in line


def test_dctq_onnx_without_its_sidecar_still_predicts_with_numbered_classes(tmp_path, make_jpeg):
    path = export_onnx(tiny_dct(num_classes=4), tmp_path / "m.onnx", dynamo=False)
    sidecar_path(path).unlink()
    result = runner.invoke(app, ["predict", str(path), str(make_jpeg("a.jpg")), "--json"])
    assert result.exit_code == 0, result.output
    (prediction,) = json.loads(result.stdout)
    assert prediction["label"] in {"0", "1", "2", "3"} and np.isclose(
        sum(t["probability"] for t in prediction["top"]), 1.0, atol=1e-5
    )
