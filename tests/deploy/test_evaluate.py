"""Accuracy per JPEG quality: exact counts with scripted predictors, models and checkpoints, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import saved_model
from typer.testing import CliRunner

from dctq.cli import evaluate_cmd
from dctq.cli.main import app
from dctq.common.errors import ConfigError, DctqError, ModelError
from dctq.deploy.evaluate import EvalReport, QualityRow, as_runner, evaluate, evaluate_artifact
from dctq.jpeg.dataset import JpegFolder
from dctq.jpeg.quality import ijg_qt
from dctq.jpeg.recompress import QualityPolicy
from dctq.jpeg.rgb import RgbJpegFolder
from dctq.models.checkpoint import LoadedCheckpoint
from dctq.models.qabn import apply_qabn
from dctq.models.qabn_routing import oracle_branch_index
from dctq.models.registry import create_model

CLASSES = 7
TINY_DCT = {"widths": [8, 8], "depths": [1, 1]}


@pytest.fixture
def seven_classes(make_jpeg, tmp_path):
    """root/c0..c6/0.jpg: one 32x32 JPEG per class (quality 95)."""
    for c in range(CLASSES):
        make_jpeg(f"seven/c{c}/0.jpg", seed=c, quality=95)
    return tmp_path / "seven"


def _seven_class_checkpoint(tmp_path):
    """(model, path): a fresh tiny dct_cifar_upsampling for classes c0..c6, saved as tmp_path/m.pt."""
    classes = [f"c{c}" for c in range(CLASSES)]
    return saved_model(tmp_path / "m.pt", "dct_cifar_upsampling", classes, num_classes=CLASSES, **TINY_DCT)


def dct_factory(root):
    return lambda q: JpegFolder(root, input_size=32, train=False, qualities=QualityPolicy(test_quality=q))


def ranked(rank: int):
    """A predictor that puts the true label at position `rank` (0 = top) of its logits."""

    def predict(batch):
        labels = batch["label"]
        logits = torch.zeros(len(labels), CLASSES)
        for i, label in enumerate(labels.tolist()):
            others = [c for c in range(CLASSES) if c != label]
            order = [*others[:rank], label, *others[rank:]]
            logits[i, order] = torch.arange(CLASSES, 0, -1, dtype=torch.float32)
        return logits

    return predict


@pytest.mark.parametrize("rank, top1, top5", [(0, 1.0, 1.0), (3, 0.0, 1.0), (5, 0.0, 0.0)])
def test_topk_counts_are_exact(seven_classes, rank, top1, top5):
    report = evaluate(ranked(rank), dct_factory(seven_classes), None, batch_size=3)
    (row,) = report.rows
    assert (row.quality, row.images, row.top1, row.top5) == (None, CLASSES, top1, top5)
    expected_loss = float(torch.log(torch.exp(torch.arange(CLASSES, 0, -1.0)).sum()) - (CLASSES - rank))
    assert row.loss == pytest.approx(expected_loss, rel=1e-5)


def test_each_row_sees_images_at_its_quality(seven_classes):
    seen = {}

    def predict(batch):
        q = int(batch["quality"][0])
        seen[q] = batch["qt"][0]
        assert (batch["quality"] == q).all()
        return torch.nn.functional.one_hot(batch["label"], CLASSES).float()

    report = evaluate(predict, dct_factory(seven_classes), [10, 50, 90], batch_size=4)
    assert [r.quality for r in report.rows] == [10, 50, 90]
    assert all(r.top1 == 1.0 and r.images == CLASSES for r in report.rows)
    for q in (10, 50, 90):
        assert torch.equal(seen[q], ijg_qt([q])[0])  # re-compressed with the IJG tables of q
    assert report.mean_top1 == 1.0 and json.loads(json.dumps(report.to_dict()))["rows"][0]["quality"] == 10


def test_bad_predictor_and_empty_data_raise(seven_classes, tmp_path):
    with pytest.raises(DctqError, match="shape"):
        evaluate(lambda b: torch.zeros(1, CLASSES), dct_factory(seven_classes), None, batch_size=4)
    with pytest.raises(DctqError, match="give a model"):
        as_runner(42)


def test_model_checkpoint_and_predictor_agree(seven_classes, tmp_path):
    model, path = _seven_class_checkpoint(tmp_path)
    from_model = evaluate(model, dct_factory(seven_classes), [30, 70], batch_size=4, device="cpu")
    from_file = evaluate(path, dct_factory(seven_classes), [30, 70], batch_size=4, device="cpu")
    assert from_model.rows == from_file.rows and from_file.arch == "dct_cifar_upsampling"
    predict = as_runner(model, "cpu")
    from_predictor = evaluate(predict, dct_factory(seven_classes), [30, 70], batch_size=4)
    assert from_predictor.rows == from_model.rows


def test_rgb_model(seven_classes):
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=CLASSES)

    def factory(q):
        return RgbJpegFolder(
            seven_classes, input_size=32, train=False, qualities=QualityPolicy(test_quality=q)
        )

    report = evaluate(model, factory, [50], batch_size=8, device="cpu")
    data = factory(50)
    with torch.no_grad():  # the same images one by one, scored by hand
        logits = torch.cat([model.eval()(data[i].x[None]) for i in range(len(data))])
    labels = torch.tensor([data[i].label for i in range(len(data))])
    assert report.rows[0].images == CLASSES
    assert report.rows[0].top1 == pytest.approx(float((logits.argmax(1) == labels).float().mean()))
    assert report.rows[0].loss == pytest.approx(
        float(torch.nn.functional.cross_entropy(logits, labels)), rel=1e-4
    )


def test_oracle_routing_picks_nearest_base_quality(seven_classes):
    qualities = [95, 90, 70, 60, 35, 30, 10, 5]
    assert oracle_branch_index(ijg_qt(qualities)).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    torch.manual_seed(0)
    model = apply_qabn(create_model("dct_cifar_upsampling", num_classes=CLASSES, **TINY_DCT))
    # Make branch 3 (quality 10) useless: a model routed to it for q10 images must change its answer.
    for m in model.modules():
        if hasattr(m, "branches"):
            m.branches[3].weight.data.zero_()
            m.branches[3].bias.data.zero_()
    model.fc.bias.data.zero_()
    oracle = evaluate(model, dct_factory(seven_classes), [10, 90], batch_size=8, qabn_routing="oracle")
    mixer = evaluate(model, dct_factory(seven_classes), [10, 90], batch_size=8, qabn_routing="mixer")
    assert oracle.rows[0].loss == pytest.approx(float(np.log(CLASSES)), rel=1e-4)  # all-zero features
    assert mixer.rows[0].loss != pytest.approx(float(np.log(CLASSES)), rel=1e-4)


def test_qabn_routing_is_decided_once_from_the_stage():
    torch.manual_seed(0)
    model = apply_qabn(create_model("dct_cifar_upsampling", num_classes=CLASSES, **TINY_DCT))
    assert as_runner(model, "cpu").qabn_routing == "oracle"  # in memory: the mixer is untrained
    model.qabn_mixer.stage = "meta"  # what calibration.qsam.meta.train_meta records
    assert as_runner(model, "cpu").qabn_routing == "mixer"
    assert as_runner(model, "cpu", qabn_routing="oracle").qabn_routing == "oracle"
    kwargs = {"num_classes": CLASSES, **TINY_DCT}
    for extra, routing in [
        ({"qsam": {"stage": "base"}}, "oracle"),
        ({"qsam": {"stage": "meta"}}, "mixer"),
        ({}, "mixer"),
    ]:
        loaded = LoadedCheckpoint(model, "dct_cifar_upsampling", kwargs, [], extra)
        assert as_runner(loaded, "cpu").qabn_routing == routing  # checkpoints: their recorded stage
    plain = create_model("dct_cifar_upsampling", **kwargs)
    assert as_runner(plain, "cpu").qabn_routing is None
    with pytest.raises(ModelError, match=r"--routing \(qabn_routing\) must be one of"):
        as_runner(plain, "cpu", qabn_routing="nearest")


def test_cli_evaluate(seven_classes, tmp_path):
    _, path = _seven_class_checkpoint(tmp_path)
    runner = CliRunner()
    args = ["evaluate", str(path), "--data", str(seven_classes), "--split", "all"]
    result = runner.invoke(app, [*args, "--qualities", "20,80", "--json", "--out", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert json.loads((tmp_path / "r.json").read_text()) == report
    assert [r["quality"] for r in report["rows"]] == [20, 80] and report["rows"][0]["images"] == CLASSES
    expected = evaluate(path, dct_factory(seven_classes), [20, 80], device="cpu")
    assert (
        EvalReport(report["model"], report["arch"], tuple(QualityRow(**r) for r in report["rows"])).rows
        == expected.rows
    )

    table = runner.invoke(app, [*args, "--qualities", "95,15"])
    assert table.exit_code == 0 and "mean" in table.stdout and "95" in table.stdout
    failed = runner.invoke(app, [*args, "--qualities", "0", "--out", str(tmp_path / "bad.json")])
    assert failed.exit_code == 1 and not (tmp_path / "bad.json").exists()
    assert evaluate_cmd.parse_qualities("qsam") == tuple(range(95, 5, -5))
    assert evaluate_cmd.parse_qualities("stored") is None
    for bad, message in [
        (["--qualities", "0,50"], "--qualities"),
        (["--routing", "nope"], "--routing"),
    ]:
        failed = runner.invoke(app, [*args, *bad])
        assert failed.exit_code == 1 and failed.stderr.startswith(f"error: {message}")
    missing = runner.invoke(app, ["evaluate", str(tmp_path / "nope.pt"), "--data", str(seven_classes)])
    assert missing.exit_code == 1 and missing.stderr == f"error: artifact not found: {tmp_path / 'nope.pt'}\n"


def test_cli_evaluate_says_it_scored_the_validation_split(seven_classes, tmp_path):
    """`evaluate` of a separate test folder scored only its 10% "val" split by default, silently."""
    _, path = _seven_class_checkpoint(tmp_path)
    data = tmp_path / "more"
    for c in range(CLASSES):
        (data / f"c{c}").mkdir(parents=True)
        for i in range(10):
            (data / f"c{c}" / f"{i}.jpg").write_bytes((seven_classes / f"c{c}" / "0.jpg").read_bytes())
    result = CliRunner().invoke(app, ["evaluate", str(path), "--data", str(data), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["split"] == "val" and report["rows"][0]["images"] == CLASSES  # 1 of each class's 10
    assert result.stderr.startswith(
        f"note: scored the validation split only ({CLASSES} images, 0.1 of {data}"
    )
    assert "--split all" in result.stderr
    everything = CliRunner().invoke(
        app, ["evaluate", str(path), "--data", str(data), "--split", "all", "--json"]
    )
    assert json.loads(everything.stdout)["rows"][0]["images"] == 10 * CLASSES and everything.stderr == ""


def _with_bad_files(seven_classes, tmp_path):
    data = tmp_path / "bad-data"
    for c in range(CLASSES):
        (data / f"c{c}").mkdir(parents=True)
        (data / f"c{c}" / "0.jpg").write_bytes((seven_classes / f"c{c}" / "0.jpg").read_bytes())
    (data / "c0" / "text.jpg").write_text("not an image")
    good = (seven_classes / "c1" / "0.jpg").read_bytes()
    (data / "c1" / "cut.jpg").write_bytes(good[: len(good) // 2])
    return data


def test_cli_evaluate_bad_files_stop_list_skip(seven_classes, tmp_path):
    """`--bad-files`: stop at the first (the default), list every bad file, or skip them with a count."""
    _, path = _seven_class_checkpoint(tmp_path)
    data = _with_bad_files(seven_classes, tmp_path)
    args = ["evaluate", str(path), "--data", str(data), "--split", "all"]
    runner = CliRunner()
    stop = runner.invoke(app, args)
    assert stop.exit_code == 1 and stop.stderr.count("\n") == 1 and "text.jpg" in stop.stderr
    listed = runner.invoke(app, [*args, "--bad-files", "list"])
    assert listed.exit_code == 1 and listed.stdout == ""
    lines = listed.stderr.splitlines()
    assert len(lines) == 3 and "text.jpg: not a JPEG file" in lines[0] and "cut.jpg: " in lines[1]
    assert lines[2].startswith("error: 2 of 9 files") and "--bad-files skip" in lines[2]
    skipped = runner.invoke(app, [*args, "--bad-files", "skip", "--json"])
    assert skipped.exit_code == 0, skipped.output
    report = json.loads(skipped.stdout)
    assert report["rows"][0]["images"] == CLASSES
    assert [Path(f["path"]).name for f in report["skipped_files"]] == ["text.jpg", "cut.jpg"]
    assert skipped.stderr.startswith("skipped 2 unreadable file(s) (--bad-files skip)")


def test_evaluate_artifact_scores_checkpoints_and_exports_alike(seven_classes, tmp_path):
    pytest.importorskip("onnxruntime")
    from dctq.deploy.export.onnx import export_onnx
    from dctq.models.checkpoint import load_checkpoint

    _, path = _seven_class_checkpoint(tmp_path)
    onnx_path = export_onnx(load_checkpoint(path), tmp_path / "m.onnx")
    expected = evaluate(path, dct_factory(seven_classes), [30, 70], device="cpu")
    kwargs = {"val_fraction": 0.1, "split": "all", "qualities": [30, 70], "device": "cpu"}
    from_checkpoint = evaluate_artifact(path, seven_classes, **kwargs)
    assert from_checkpoint.rows == expected.rows and from_checkpoint.arch == "dct_cifar_upsampling"
    from_onnx = evaluate_artifact(onnx_path, seven_classes, **kwargs)
    assert from_onnx.arch == "dct_cifar_upsampling"
    assert [r.images for r in from_onnx.rows] == [CLASSES, CLASSES]
    assert all(
        abs(a.top1 - b.top1) <= 1 / CLASSES for a, b in zip(from_onnx.rows, expected.rows, strict=True)
    )
    other = tmp_path / "other"
    for c in range(CLASSES):
        (other / f"k{c}").mkdir(parents=True)
        (other / f"k{c}" / "0.jpg").write_bytes((seven_classes / f"c{c}" / "0.jpg").read_bytes())
    with pytest.raises(ConfigError, match="same class folders"):
        evaluate_artifact(path, other, **kwargs)
    with pytest.raises(ConfigError, match="--batch-size must be >= 1"):
        evaluate_artifact(path, seven_classes, **kwargs, batch_size=0)
