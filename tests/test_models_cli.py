"""`dctq models`: the registry listed as JSON and as a table, filtered by a pattern."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner


@pytest.fixture
def cli_app() -> typer.Typer:
    from dctq.cli.models_cmd import register

    app = typer.Typer()

    @app.callback()
    def main() -> None:  # a callback keeps `models` as a named subcommand
        pass

    register(app)
    return app


def test_models_command_json(cli_app):
    result = CliRunner().invoke(cli_app, ["models", "resnet*", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert set(rows) == {"resnet50", "resnet20", "resnet18_cifar"}
    assert rows["resnet50"]["params"] == 25_557_032
    assert (
        rows["resnet50"]["flops"] == 2 * rows["resnet50"]["macs"] == 2 * 3_857_973_248
    )  # v1 strides, as in test_models.py


def test_models_command_table(cli_app):
    result = CliRunner().invoke(cli_app, ["models", "dct_late*", "--long"])
    assert result.exit_code == 0, result.output
    assert "dct_late_concat_rfa_thinner" in result.output and "24.531" in result.output
    assert "resnet50" not in result.output
