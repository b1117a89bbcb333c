"""Every command's --help shows each option's help text whole: typer renders help as Rich markup, where a
bare [...] is a tag and vanishes (`pip install 'dctq[tensorrt]'` showed as `pip install 'dctq'`)."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from dctq.cli.main import app

COMMANDS = typer.main.get_command(app).commands


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_bracketed_help_text_survives_rich_markup(name):
    result = CliRunner().invoke(app, [name, "--help"], env={"COLUMNS": "2000"})
    assert result.exit_code == 0, result.output
    shown = re.sub(r"\s+", " ", result.stdout.replace("│", " "))
    command = COMMANDS[name]
    texts = [p.help or "" for p in command.params] + [command.help or ""]
    # The text as written (an escaped "\[" is how a literal bracket is written for Rich).
    brackets = [seg for text in texts for seg in re.findall(r"\[[^\]]*\]", text.replace("\\[", "["))]
    missing = [seg for seg in brackets if seg not in shown]
    assert not missing, f"dctq {name} --help lost {missing}"


def test_the_export_help_names_the_tensorrt_extra():
    result = CliRunner().invoke(app, ["export", "--help"], env={"COLUMNS": "2000"})
    assert "pip install 'dctq[tensorrt]'" in result.stdout
