"""`dctq models`: the registry listed as JSON and as a table, filtered by a pattern."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from dctq.cli.main import app

RESNET50_V1_MACS = 3_857_973_248
"""ResNet-50 with v1 strides at 224x224: test_models.py's regression table and its sources."""


def test_models_command_json():
    result = CliRunner().invoke(app, ["models", "resnet*", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert set(rows) == {"resnet50", "resnet20", "resnet18_cifar"}
    assert rows["resnet50"]["params"] == 25_557_032
    assert rows["resnet50"]["flops"] == 2 * rows["resnet50"]["macs"] == 2 * RESNET50_V1_MACS
    # ModelSummary.to_dict's keys, in the order the command has always printed them.
    assert list(rows["resnet50"]) == [
        "name",
        "input_kind",
        "input_size",
        "params",
        "macs",
        "flops",
        "description",
        "task",
    ]
    assert rows["resnet50"]["task"] == "classify"


def test_models_command_table():
    result = CliRunner().invoke(app, ["models", "dct_late*", "--long"])
    assert result.exit_code == 0, result.output
    assert "dct_late_concat_rfa_thinner" in result.output and "24.679" in result.output
    assert "resnet50" not in result.output
