"""The `dctq` command line: --version, --help, and `dctq inspect` for people and for scripts."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from dctq import __version__
from dctq.cli.common import to_jsonable
from dctq.cli.main import app
from dctq.common.errors import JpegError
from dctq.jpeg.inspect import inspect_jpeg

runner = CliRunner()


@pytest.fixture
def files(make_jpeg, tmp_path, monkeypatch):
    """Short relative names (the table folds long paths): two good JPEGs, a PNG named .jpg, a missing file."""
    monkeypatch.chdir(tmp_path)
    make_jpeg("a.jpg", height=32, width=48, quality=80)
    make_jpeg("b.jpg", height=16, width=16, quality=95, subsampling=0, progressive=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "png.jpg", format="PNG")
    return {"a": "a.jpg", "b": "b.jpg", "png": "png.jpg", "missing": "missing.jpg"}


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"dctq {__version__}"


def test_help_lists_inspect_and_its_options():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "inspect" in result.stdout and "--debug" in result.stdout
    result = runner.invoke(app, ["inspect", "--help"])
    assert result.exit_code == 0
    for option in ("--json", "--tables", "--backend"):
        assert option in result.stdout


def test_inspect_table_single_file(files):
    result = runner.invoke(app, ["inspect", files["a"]])
    assert result.exit_code == 0, result.output
    report = inspect_jpeg(files["a"])
    out = result.stdout
    assert "a.jpg" in out and "48x32" in out and "4:2:0" in out
    assert f"{report.block_grid[0]}x{report.block_grid[1]}" in out
    assert str(report.file_size) in out
    # A single file gets its quant tables and the Y non-zero grid.
    assert "quant table Y" in out and "quant table Cr" in out
    assert "Y non-zero" in out
    assert "IJG quality: 80 (exactly" in out
    # Row u=0 of the Y table, in order, as the grid prints it.
    row0 = r"\s+".join(str(v) for v in report.qtables[0][0])
    assert re.search(rf"(^|\s)0\s+{row0}(\s|$)", out, flags=re.MULTILINE)


def test_inspect_table_many_files_hides_grids_unless_asked(files):
    result = runner.invoke(app, ["inspect", files["a"], files["b"]])
    assert result.exit_code == 0, result.output
    assert "a.jpg" in result.stdout and "b.jpg" in result.stdout
    assert "4:4:4 prog" in result.stdout and "quant table" not in result.stdout
    result = runner.invoke(app, ["inspect", "--tables", files["a"], files["b"]])
    assert result.stdout.count("quant table Y") == 2


def test_inspect_json_equals_library(files):
    result = runner.invoke(app, ["inspect", "--json", files["a"], files["b"]])
    assert result.exit_code == 0, result.output
    entries = json.loads(result.stdout)
    assert entries == [to_jsonable(inspect_jpeg(files["a"])), to_jsonable(inspect_jpeg(files["b"]))]
    assert entries[0]["quality"] == 80 and entries[1]["progressive"] is True
    assert len(entries[0]["nonzero_share"]["y"]) == 64


def test_inspect_bad_files_reported_one_line_each(files):
    args = ["inspect", files["png"], files["a"], files["missing"]]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert "a.jpg" in result.stdout  # the good file in the middle is still reported
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2
    assert "png.jpg" in lines[0] and "missing.jpg" in lines[1]
    assert all(line.startswith("error:") for line in lines)
    assert isinstance(result.exception, SystemExit)  # no other exception escaped the command


def test_inspect_bad_files_json_has_error_entries(files):
    result = runner.invoke(app, ["inspect", "--json", files["a"], files["missing"]])
    assert result.exit_code == 1
    entries = json.loads(result.stdout)
    assert entries[0]["quality"] == 80 and "error" not in entries[0]
    assert entries[1]["path"] == files["missing"] and "missing.jpg" in entries[1]["error"]


def test_inspect_debug_raises(files):
    # Without --debug the error ends in typer.Exit (SystemExit); with it the JpegError itself escapes
    # the app, and Python prints its traceback (checked in a real process in the slow test below).
    result = runner.invoke(app, ["inspect", files["missing"]])
    assert isinstance(result.exception, SystemExit)
    result = runner.invoke(app, ["--debug", "inspect", files["missing"]])
    assert result.exit_code == 1
    assert isinstance(result.exception, JpegError) and "missing.jpg" in str(result.exception)


@pytest.mark.parametrize("backend", ["turbo", "jpeglib"])
def test_inspect_backends_agree(files, backend):
    from dctq.jpeg.reader import available_backends

    if backend not in available_backends():
        pytest.skip(f"backend {backend} not available here")
    result = runner.invoke(app, ["inspect", "--json", "--backend", backend, files["a"]])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [to_jsonable(inspect_jpeg(files["a"]))]


def test_inspect_unknown_backend_is_a_usage_error(files):
    result = runner.invoke(app, ["inspect", "--backend", "nope", files["a"]])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: Invalid value for '--backend': unknown backend 'nope'")


@pytest.mark.slow  # two interpreters importing torch (jpeg.dct): several seconds on 2 busy cores
def test_inspect_debug_prints_traceback_in_a_real_process(files, tmp_path):
    code = "from dctq.cli.main import app; app()"
    run = [sys.executable, "-c", code]
    plain = subprocess.run([*run, "inspect", files["png"]], capture_output=True, text=True, cwd=tmp_path)
    assert plain.returncode == 1
    assert "Traceback" not in plain.stderr and "png.jpg" in plain.stderr
    debug = subprocess.run(
        [*run, "--debug", "inspect", files["png"]], capture_output=True, text=True, cwd=tmp_path
    )
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr and "JpegError" in debug.stderr


def test_sequence_defaults_show_as_the_comma_list_the_option_parses():
    result = CliRunner().invoke(app, ["synthesize", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "[default: 50,95]" in result.output and "(50, 95)" not in result.output
