"""The README's promise, through the real `dctq` app: every command's errors are one line on stderr with
exit code 1, usage errors (unknown option or command, missing argument, a value of the wrong type) one line
with exit code 2, and outputs that cannot be written are refused before any work."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer
from helpers import TINY, jpeg_bytes, saved_model, smooth_rgb
from typer.testing import CliRunner

from dctq.cli.main import app

runner = CliRunner()
README = Path(__file__).resolve().parents[2] / "README.md"


# Field and class names of the library's configs, which a user of the command line never typed.
INTERNAL_NAMES = (
    r"\b(val_fraction|num_workers|top_k|batch_size|per_class|sil_eps|steps_per_epoch|\w+Config\.)"
)


def _invoke(args: list[str]):
    result = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "300"})
    # An exception other than SystemExit escaped the app: Python would print its traceback.
    assert isinstance(result.exception, SystemExit), (result.exception, result.output)
    return result


def test_every_readme_command_is_registered_in_the_app():
    """Commands were tested through one-command apps built in the tests, so dropping one from the real
    app failed nothing: the README's command table and the app must list the same commands."""
    documented = set(re.findall(r"^\| `dctq ([a-z-]+)", README.read_text(), flags=re.MULTILINE))
    registered = set(typer.main.get_command(app).commands)
    assert documented == registered


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny FP checkpoint, a data folder, a folder and a plain file (as wrong outputs)."""
    root = tmp_path_factory.mktemp("errors")
    _, checkpoint = saved_model(root / "m.pt", "dct_cifar_upsampling", ["cat", "dog"], num_classes=2, **TINY)
    (root / "folder").mkdir()
    (root / "file.txt").write_text("not a folder")
    for c, name in enumerate(("cat", "dog")):
        (root / "data" / name).mkdir(parents=True)
        for i in range(3):
            (root / "data" / name / f"{i}.jpg").write_bytes(jpeg_bytes(smooth_rgb(32, 32, seed=10 * c + i)))
    return {
        "root": root,
        "ckpt": checkpoint,
        "folder": root / "folder",
        "file": root / "file.txt",
        "data": root / "data",
    }


# (case, args with {placeholders} of `files`, what the one line says). Outputs that cannot be written go with
# inputs that do not exist: the message naming the output proves the output was checked first.
CASES = [
    ("demo-out-file", ["demo", "--out", "{file}"], r"--out .*file.txt is a file, not a folder"),
    ("inspect-missing", ["inspect", "{root}/none.jpg"], r"none.jpg: no such file"),
    ("inspect-model", ["inspect", "{ckpt}"], r"m.pt: a model file \(checkpoint\), not a JPEG"),
    ("train-unknown-arch", ["train", "resnet2O", "--data", "{folder}", "--out", "{root}/run"], r"resnet2O"),
    ("train-arch-kwargs-value", ["train", "dct_cifar_upsampling", "--data", "{data}", "--out", "{root}/r", "--arch-kwargs", '{{"widths": "x"}}'], r"cannot be built from the arguments"),
    ("train-arch-kwargs-name", ["train", "dct_cifar_upsampling", "--data", "{data}", "--out", "{root}/r", "--arch-kwargs", '{{"nope": 1}}'], r"does not take these arguments"),
    ("train-out-file", ["train", "resnet20", "--data", "{root}/none", "--out", "{file}"], r"--out .*is a file"),
    ("train-meta-out-file", ["train-meta", "{root}/none.pt", "--data", "x", "--out", "{file}"], r"--out .*is a file"),
    ("train-meta-not-qabn", ["train-meta", "{ckpt}", "--data", "{folder}", "--out", "{root}/meta"], r"m.pt"),
    ("evaluate-missing", ["evaluate", "{root}/none.pt", "--data", "{folder}"], r"artifact not found: .*none.pt"),
    ("evaluate-out-folder", ["evaluate", "{root}/none.pt", "--data", "x", "--out", "{folder}"], r"--out .*folder is a folder"),
    ("synthesize-grid-folder", ["synthesize", "{root}/none.pt", "--out", "{root}/s.pt", "--grid", "{folder}"], r"--grid .*is a folder"),
    ("synthesize-missing", ["synthesize", "{root}/none.pt", "--out", "{root}/s.pt"], r"none.pt"),
    ("quantize-out-folder", ["quantize", "{root}/none.pt", "--calib", "x", "--out", "{folder}"], r"--out .*folder is a folder"),
    ("quantize-no-calib", ["quantize", "{ckpt}", "--out", "{root}/q.pt"], r"--calib"),
    ("export-opset", ["export", "{ckpt}", "--out", "{root}/m.onnx", "--opset", "99"], r"opset 99 does not exist"),
    ("export-out-folder", ["export", "{root}/none.pt", "--out", "{folder}"], r"--out .*folder"),
    ("export-suffix", ["export", "{ckpt}", "--format", "onnx", "--out", "{root}/x.pt"], r"must end in \.onnx"),
    ("check-missing", ["check", "{root}/none.onnx"], r"ONNX file not found"),
    ("predict-missing-image", ["predict", "{ckpt}", "{root}/none.jpg"], r"none.jpg: no such file"),
    ("predict-top-k", ["predict", "{ckpt}", "{root}/none.jpg", "--top-k", "0"], r"--top-k must be >= 1, got 0"),
    ("profile-plot-folder", ["profile", "{root}/none.pt", "--plot", "{folder}"], r"--plot .*folder is a folder"),
    ("profile-threads-tensorrt", ["profile", "{ckpt}", "--backend", "tensorrt", "--threads", "2"], r"--threads"),
    ("profile-batch", ["profile", "{ckpt}", "--batch", "0"], r"--batch needs batch sizes >= 1"),
    # Values a config refuses: the message names the option, not the library's field.
    ("demo-per-class", ["demo", "--out", "{root}/demo", "--per-class", "0"], r"--per-class must be >= 1"),
    ("train-val-fraction", ["train", "resnet20", "--data", "{folder}", "--out", "{root}/r", "--val-fraction", "1.5"], r"--val-fraction must be"),
    ("train-meta-epochs", ["train-meta", "{ckpt}", "--data", "{folder}", "--out", "{root}/m", "--epochs", "0"], r"--epochs must be >= 1"),
    ("train-meta-lr", ["train-meta", "{ckpt}", "--data", "{folder}", "--out", "{root}/m", "--lr", "-1"], r"--lr must be > 0"),
    ("evaluate-val-fraction", ["evaluate", "{ckpt}", "--data", "{folder}", "--val-fraction", "2"], r"--val-fraction must be in"),
    ("evaluate-workers", ["evaluate", "{ckpt}", "--data", "{folder}", "--workers", "-1"], r"--workers must be >= 0"),
    ("synthesize-lr", ["synthesize", "{ckpt}", "--out", "{root}/s.pt", "--lr", "-1"], r"--lr \(of synthesize\) must be > 0"),
    ("synthesize-sil-eps", ["synthesize", "{ckpt}", "--out", "{root}/s.pt", "--sil-eps", "2"], r"--sil-eps must be in"),
    ("quantize-workers", ["quantize", "{ckpt}", "--calib", "{folder}", "--out", "{root}/q.pt", "--workers", "-1"], r"--workers must be >= 0"),
    ("quantize-epochs", ["quantize", "{ckpt}", "--method", "intraq", "--out", "{root}/q.pt", "--epochs", "-1"], r"--epochs must be"),
    ("quantize-steps", ["quantize", "{ckpt}", "--method", "intraq", "--out", "{root}/q.pt", "--steps-per-epoch", "0"], r"--steps-per-epoch must be"),
    ("quantize-num-synthetic", ["quantize", "{ckpt}", "--method", "intraq", "--out", "{root}/q.pt", "--num-synthetic", "0"], r"--num-synthetic"),
    # An output that is the command's input: the model was overwritten by a report or a picture.
    ("evaluate-out-is-input", ["evaluate", "{ckpt}", "--data", "{folder}", "--out", "{ckpt}"], r"--out .*m.pt would overwrite the input"),
    ("profile-plot-is-input", ["profile", "{ckpt}", "--plot", "{ckpt}"], r"--plot .*m.pt would overwrite the input"),
    ("synthesize-grid-is-input", ["synthesize", "{ckpt}", "--out", "{root}/s.pt", "--grid", "{ckpt}"], r"--grid .*would overwrite the input"),
    ("quantize-out-is-input", ["quantize", "{ckpt}", "--calib", "{folder}", "--out", "{ckpt}"], r"--out .*would overwrite the input"),
    ("adapt-bn-out-folder", ["adapt-bn", "{root}/none.pt", "--data", "x", "--quality", "50", "--out", "{folder}"], r"--out .*folder is a folder"),
    ("adapt-bn-missing", ["adapt-bn", "{root}/none.pt", "--data", "x", "--quality", "50", "--out", "{root}/a.pt"], r"checkpoint not found: .*none.pt"),
    ("adapt-bn-quality", ["adapt-bn", "{ckpt}", "--data", "{folder}", "--quality", "0", "--out", "{root}/a.pt"], r"--quality must be a JPEG quality in 1..100, got 0"),
    ("report-not-folder", ["report", "{root}/none"], r"none is not a folder; pass the --out folder of a run"),
    ("report-plot-format", ["report", "{folder}", "--plot-format", "gif"], r"--plot-format must be one of png, svg, pdf, got 'gif'"),
    ("predict-batch-size", ["predict", "{ckpt}", "{root}/none.jpg", "--batch-size", "0"], r"--batch-size must be >= 1"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "args", "message"), CASES, ids=[c[0] for c in CASES])
def test_errors_are_one_line_on_stderr_with_exit_code_1(files, case, args, message):
    result = _invoke([a.format(**files) for a in args])
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert re.search(message, lines[0]), lines[0]
    assert not re.search(INTERNAL_NAMES, lines[0]), f"the message names library internals: {lines[0]}"
    assert result.stdout == ""


def test_every_command_has_an_error_case():
    tested = {args[0] for _, args, _ in CASES} | {"check", "models", "env"}  # models/env: usage errors only
    assert tested == set(typer.main.get_command(app).commands)


@pytest.mark.parametrize("command", sorted(typer.main.get_command(app).commands))
def test_usage_errors_are_one_line_with_exit_code_2(command):
    """Bad options printed Click's usage text and a Rich box; the README promised one line."""
    result = _invoke([command, "--xyzzy"])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"error: No such option: --xyzzy (see `dctq {command} --help`)"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["export", "m.pt", "--opset", "abc"], r"^error: Invalid value for '--opset': .*\(see `dctq export --help`\)$"),
        (["export"], r"^error: Missing argument 'CHECKPOINT'.*|^error: Missing argument 'checkpoint'.*"),
        (["expor"], r"^error: No such command 'expor'. Did you mean 'export'(, 'report')?\? \(see `dctq --help`\)$"),
        (["inspect", "--backend", "nope", "a.jpg"], r"^error: Invalid value for '--backend': unknown backend 'nope'"),
    ],
)  # fmt: skip
def test_bad_values_and_commands_are_usage_errors(args, message):
    result = _invoke(args)
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert re.search(message, line), line


def test_a_bad_file_read_by_a_loader_worker_is_one_line(files, tmp_path):
    """With --workers >= 1 torch re-raises the worker's error with the worker's traceback in its message."""
    data = tmp_path / "data"
    for c in ("cat", "dog"):
        (data / c).mkdir(parents=True)
        (data / c / "0.jpg").write_bytes((files["root"] / "m.pt").read_bytes()[:64])
    result = _invoke(["evaluate", files["ckpt"], "--data", data, "--split", "all", "--workers", "1"])
    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()
    assert re.fullmatch(r"error: .*0\.jpg: not a JPEG file \(no SOI marker; .*", line), line
