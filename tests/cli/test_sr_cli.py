"""The SR commands end to end (train, evaluate, predict, quantize --method qat|odm, export, check) and the
bad inputs of the SR path: each a one-line error with exit code 1 that leaves nothing half-written."""

from __future__ import annotations

import json

import numpy as np
import PIL.Image
import pytest
from helpers import hr_folder, saved_model, smooth_rgb
from typer.testing import CliRunner

from dctq.cli.main import app

runner = CliRunner()
TRAIN = [
    "--epochs",
    "1",
    "--samples-per-epoch",
    "8",
    "--batch-size",
    "4",
    "--patch-size",
    "16",
    "--val-fraction",
    "0.34",
]


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.stdout


def _fails(args: list[str], message: str) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output
    assert (
        result.output.strip().startswith("error:") and len(result.output.strip().splitlines()) <= 3
    )  # one wrapped line
    return result.output


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("srcli")
    folder = hr_folder(root / "hr", n=6, size=(37, 35))  # odd sides: cropped to multiples of the scale
    report = json.loads(
        _ok(["train", "edsr_cpu_x2", "--data", str(folder), "--out", str(root / "run"), *TRAIN, "--json"])
    )
    return root, folder, report


def test_train_evaluate_predict(trained, tmp_path):
    root, folder, report = trained
    assert report["best_top1"] is None and report["best_psnr"] > 0
    best = root / "run" / "best.pt"
    ev = json.loads(_ok(["evaluate", str(best), "--data", str(folder), "--json"]))
    (row,) = ev["sets"]
    assert ev["task"] == "sr" and ev["scale"] == 2 and row["images"] == 6 and row["cropped"] == 6
    assert len(row["per_image"]) == 6 and row["psnr"] == pytest.approx(
        np.mean([i["psnr"] for i in row["per_image"]])
    )
    table = _ok(["evaluate", str(best), "--data", str(folder)])
    assert "PSNR dB" in table and "SSIM" in table
    low = folder / "img_000.png"
    _ok(["predict", str(best), str(low), "--out", str(tmp_path / "high.png")])
    assert PIL.Image.open(tmp_path / "high.png").size == (74, 70)


def test_quantize_qat_export_check(trained, tmp_path):
    root, folder, _ = trained
    best = root / "run" / "best.pt"
    out = tmp_path / "q.pt"
    info = json.loads(_ok([
        "quantize", str(best), "--method", "odm", "--data", str(folder), "--bits", "w8a8", "--epochs", "1",
        "--steps-per-epoch", "2", "--batch-size", "2", "--offsets", "none", "--out", str(out), "--json",
    ]))  # fmt: skip
    assert info["method"] == "odm" and info["quantization"]["qat"]["conflict_ratio_total"] is not None
    _ok(["export", str(out), "--format", "onnx", "--out", str(tmp_path / "q.onnx")])
    _ok(["check", str(tmp_path / "q.onnx")])
    ev = json.loads(_ok(["evaluate", str(tmp_path / "q.onnx"), "--data", str(folder), "--json"]))
    assert ev["backend"] == "ort"


def _write(folder, name, image) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    image.save(folder / name)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("gray", "grayscale"),
        ("cmyk", "CMYK"),
        ("small", "(12x10) is smaller than the"),  # the 16x16 training patch, or the 15x15 evaluation needs
        ("empty", "holds no image"),
        ("cifar10", "CIFAR-10 classification archive"),
    ],
)
def test_bad_training_data_is_a_one_line_error(tmp_path, bad, message):
    folder = hr_folder(tmp_path / "hr", n=4, size=(32, 32))
    if bad == "gray":
        _write(folder, "g.png", PIL.Image.new("L", (32, 32)))
    elif bad == "cmyk":
        _write(folder, "c.jpg", PIL.Image.new("CMYK", (32, 32)))
    elif bad == "small":
        _write(folder, "s.png", PIL.Image.fromarray(smooth_rgb(10, 12)))
    elif bad == "empty":
        folder = tmp_path / "empty"
        folder.mkdir()
    data = "cifar10" if bad == "cifar10" else str(folder)
    out = tmp_path / "run"
    _fails(["train", "edsr_cpu_x2", "--data", data, "--out", str(out), *TRAIN], message)
    assert not out.exists() or not any(out.iterdir())


def test_sr_and_classifier_checkpoints_given_to_the_other_commands(trained, tmp_path, jpeg_folder):
    root, folder, _ = trained
    best = str(root / "run" / "best.pt")
    _, clf = saved_model(tmp_path / "clf.pt", "resnet20", ["a", "b"], num_classes=2)
    _fails(["evaluate", best, "--data", "cifar10"], "is a super-resolution model")
    _fails(["predict", best, str(folder / "img_000.png")], "give --out")
    _fails(
        ["quantize", best, "--method", "ptq", "--calib", str(jpeg_folder), "--out", str(tmp_path / "q.pt")],
        "--method qat or odm",
    )
    _fails(["evaluate", str(clf), "--data", "set5"], "is an image classifier")
    _fails(
        ["predict", str(clf), str(folder / "img_000.png"), "--out", str(tmp_path / "x.png")],
        "is a classifier",
    )
    _fails(["train", "resnet20", "--data", "sr", "--out", str(tmp_path / "r")], "super-resolution image set")
    _fails(
        ["quantize", str(clf), "--method", "qat", "--data", "set14", "--out", str(tmp_path / "q.pt")],
        "classifier",
    )
    assert (
        not (tmp_path / "q.pt").exists()
        and not (tmp_path / "x.png").exists()
        and not (tmp_path / "r").exists()
    )
