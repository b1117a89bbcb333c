"""cli/common.py: the one error line (also for errors re-raised from DataLoader workers), strict JSON, and
the warning when only the slow JPEG reader is there."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import typer
from torch.utils.data import DataLoader, Dataset
from typer.testing import CliRunner

from dctq.cli.common import error_line, json_text, to_jsonable, user_errors
from dctq.cli.main import app
from dctq.common.errors import CorruptJpegError
from dctq.jpeg import decoders


class _Bad(Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int):
        raise CorruptJpegError("x.jpg: the JPEG data is damaged; re-encode or drop the file")


def test_an_error_from_a_loader_worker_is_its_own_message():
    with pytest.raises(CorruptJpegError) as info:
        next(iter(DataLoader(_Bad(), num_workers=1)))
    assert "Original Traceback" in str(info.value)  # what torch does: the worker's traceback in the message
    assert error_line(info.value) == "x.jpg: the JPEG data is damaged; re-encode or drop the file"
    assert error_line(ValueError("two\nlines")) == "two lines"


def test_json_is_strict_nan_and_infinity_become_null():
    """`--json` wrote bare NaN, which JSON parsers refuse."""
    data = {
        "loss": float("nan"),
        "rows": [float("inf"), 1.5],
        "arr": np.array([np.nan, 2.0]),
        "t": torch.tensor(-math.inf),
    }
    text = json_text(data)
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}")) == {
        "loss": None,
        "rows": [None, 1.5],
        "arr": [None, 2.0],
        "t": None,
    }
    assert to_jsonable(np.float32(0.5)) == 0.5


def test_slow_reader_warning_only_for_commands_that_read_jpegs(make_jpeg, monkeypatch):
    """Without the C extension reads fall back to jpeglib, 10-40x slower: commands that read JPEGs say so."""
    image = make_jpeg("a.jpg")
    runner = CliRunner()
    fast = runner.invoke(app, ["inspect", str(image)])
    assert fast.exit_code == 0 and "warning" not in fast.stderr
    monkeypatch.setattr(decoders, "_turbo", None)  # what an install without libjpeg headers has
    slow = runner.invoke(app, ["inspect", "--json", str(image)])
    assert slow.exit_code == 0, slow.output
    (line,) = slow.stderr.splitlines()
    assert line.startswith("warning: the fast JPEG reader") and "jpeglib, 10-40x slower" in line
    assert json.loads(slow.stdout)[0]["width"] == 32  # read by jpeglib
    quiet = runner.invoke(app, ["models", "resnet20", "--json"])
    assert quiet.exit_code == 0 and quiet.stderr == ""


def test_a_file_system_error_under_a_command_is_one_line(tmp_path):
    """An OSError the command did not foresee (a vanished folder, no space) is one line, not a traceback."""
    probe = typer.Typer()

    @probe.command()
    def write(ctx: typer.Context) -> None:
        with user_errors(ctx):
            (tmp_path / "gone" / "x").mkdir()

    @probe.command()
    def other() -> None:  # a second command keeps `write` a sub-command
        pass

    result = CliRunner().invoke(probe, ["write"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.stderr == f"error: {tmp_path / 'gone' / 'x'}: No such file or directory\n"
