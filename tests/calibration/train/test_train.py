"""The training loop end to end on 8 tiny JPEGs: checkpoints, overfitting, exact resume, QAC/QABN, CLI."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math

import pytest
import torch
import typer
from typer.testing import CliRunner

from dctq.calibration.qsam.data import MultiQualityDataset, collate_versions
from dctq.calibration.qsam.meta import MetaConfig, train_meta
from dctq.calibration.train.config import TrainConfig
from dctq.calibration.train.data import build_train_data
from dctq.calibration.train.loop import EpochEnd, EpochStart, StepEnd, lr_factor, train
from dctq.cli.main import app
from dctq.common.errors import ConfigError, DataError
from dctq.common.records import read_metrics
from dctq.deploy.evaluate import as_runner
from dctq.jpeg.dataset import JpegFolder
from dctq.jpeg.recompress import QualityPolicy
from dctq.models.checkpoint import load_checkpoint
from dctq.models.qabn import QSAM_BASE_QUALITIES, QABatchNorm2d, is_qabn

TINY_DCT = {"widths": [8, 8], "depths": [1, 1]}


def tiny_config(**changes) -> TrainConfig:
    base = dict(
        arch="dct_cifar_upsampling",
        arch_kwargs=TINY_DCT,
        epochs=2,
        batch_size=4,
        lr=0.05,
        val_fraction=0.25,
        stem_stats_batches=2,
        log_every=1,
    )
    return TrainConfig(**{**base, **changes})


def run(config, folder, out, **kwargs):
    data = build_train_data(folder, config)
    return train(config, data.train, data.val, out, **kwargs)


# ----------------------------------------------------------------------------------- config


def test_config_round_trips_and_names_flags():
    config = tiny_config(train_qualities=[90, 30], schedule="multistep", milestones=[1])
    assert config.train_qualities == (90, 30)
    again = TrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    for changes, flag in [
        ({"lr": 0}, "--lr"),
        ({"schedule": "step"}, "--schedule"),
        ({"milestones": [5]}, "--milestones"),
        ({"train_qualities": [101]}, "--qualities"),
        ({"momentum": 0.0}, "--nesterov"),
        ({"arch_kwargs": {"num_classes": 3}}, "--arch-kwargs"),
        ({"warmup_epochs": 2}, "--warmup-epochs"),
    ]:
        with pytest.raises(ConfigError, match=flag):
            tiny_config(**changes)
    with pytest.raises(ConfigError, match="version"):
        TrainConfig.from_dict({**config.to_dict(), "version": 99})


def test_lr_schedules():
    cosine = tiny_config(epochs=4, warmup_epochs=1)
    factors = [lr_factor(s, config=cosine, steps_per_epoch=10) for s in range(40)]
    assert factors[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert factors[10] == 1.0 and factors[39] == pytest.approx(0.5 * (1 + math.cos(math.pi * 29 / 30)))
    assert all(a >= b for a, b in itertools.pairwise(factors[9:]))
    multistep = tiny_config(epochs=4, schedule="multistep", milestones=[1, 3], gamma=0.1)
    got = [lr_factor(s, config=multistep, steps_per_epoch=10) for s in (0, 9, 10, 29, 30)]
    assert got == pytest.approx([1, 1, 0.1, 0.1, 0.01])


# ---------------------------------------------------------------------------------- training


@pytest.mark.parametrize(
    "arch, kwargs", [("dct_cifar_upsampling", TINY_DCT), ("resnet20", {})], ids=["dct", "rgb"]
)
def test_train_writes_loadable_checkpoints_and_events(jpeg_folder, tmp_path, arch, kwargs):
    config = tiny_config(arch=arch, arch_kwargs=kwargs, max_steps_per_epoch=1)
    events = []
    result = run(config, jpeg_folder, tmp_path / "out", progress=events.append)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "best.pt",
        "last.pt",
        "last.state.pt",
        "metrics.csv",
    ]
    assert [type(e) for e in events] == [EpochStart, StepEnd, EpochEnd] * 2
    assert len(result.history) == 2 and result.history[-1].val.images == 2
    for name in ("best.pt", "last.pt"):
        loaded = load_checkpoint(tmp_path / "out" / name)  # weights_only inside
        assert loaded.arch == arch and loaded.class_names == ["cat", "dog"]
        assert TrainConfig.from_dict(loaded.extra["train_config"]) == config
    assert load_checkpoint(result.best_path).extra["epoch"] == result.best_epoch
    torch.load(tmp_path / "out" / "last.state.pt", weights_only=True)
    last = load_checkpoint(result.last_path).model.state_dict()
    assert all(torch.equal(v, last[k]) for k, v in result.model.state_dict().items())
    if arch == "dct_cifar_upsampling":
        assert result.model.stem.has_stats()
    with pytest.raises(DataError, match="--resume"):
        run(config, jpeg_folder, tmp_path / "out")


def test_overfits_a_fixed_batch(jpeg_folder, tmp_path):
    # Four images, no augmentation, one step per epoch: every step sees the same batch.
    config = tiny_config(epochs=20, lr=0.05, weight_decay=0.0, max_steps_per_epoch=1)
    data = build_train_data(jpeg_folder, config)
    fixed = JpegFolder(jpeg_folder, input_size=32, train=True, transforms=None, samples=data.split.train[:4])
    result = train(config, fixed, data.val, tmp_path / "out")
    losses = [h.train_loss for h in result.history]
    assert losses[-1] < 0.3 * losses[0], losses
    assert result.history[-1].train_top1 == 1.0


def test_resume_repeats_the_straight_run(jpeg_folder, tmp_path):
    config = tiny_config(train_qualities=(80, 40), max_steps_per_epoch=2)
    straight = run(config, jpeg_folder, tmp_path / "a")

    class Killed(Exception):
        pass

    def kill_after_first_epoch(event):
        if isinstance(event, EpochEnd) and event.epoch == 1:
            raise Killed

    with pytest.raises(Killed):
        run(config, jpeg_folder, tmp_path / "b", progress=kill_after_first_epoch)
    assert load_checkpoint(tmp_path / "b" / "last.pt").extra["epoch"] == 1
    assert [r["epoch"] for r in read_metrics(tmp_path / "b" / "metrics.csv")] == [1]
    with pytest.raises(ConfigError, match="lr"):
        run(config.replace(lr=0.01), jpeg_folder, tmp_path / "b", resume=True)
    resumed = run(config, jpeg_folder, tmp_path / "b", resume=True)
    assert resumed.start_epoch == 1
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    timeless = [dataclasses.replace(h, seconds=0.0) for h in straight.history]
    assert [dataclasses.replace(h, seconds=0.0) for h in resumed.history] == timeless
    # The run record holds every epoch, the resumed run's as the straight one's (timings aside).
    records = [read_metrics(tmp_path / d / "metrics.csv") for d in ("a", "b")]
    for rows in records:
        for row in rows:
            row.pop("seconds")
    assert records[0] == records[1] and [r["epoch"] for r in records[0]] == [1, 2]
    assert records[0][1]["val_top1"] == straight.history[1].val.top1
    with pytest.raises(DataError, match=r"no last\.state\.pt"):
        run(config, jpeg_folder, tmp_path / "c", resume=True)


def test_qabn_versions_share_their_augmentation(jpeg_folder):
    base = JpegFolder(jpeg_folder, input_size=32, train=True)
    multi = MultiQualityDataset(base)
    multi.reseed(3)
    versions = multi[5]
    assert [v.quality for v in versions] == list(QSAM_BASE_QUALITIES)
    for q, version in zip(QSAM_BASE_QUALITIES, versions, strict=True):
        # One quality alone, same seed: the same random draws, hence the same crop and flip.
        alone = JpegFolder(jpeg_folder, input_size=32, train=True, qualities=QualityPolicy((q,)))
        alone.reseed(3)
        sample = alone[5]
        assert torch.equal(sample.y, version.y) and torch.equal(sample.cbcr, version.cbcr)
    batch = collate_versions([multi[0], multi[1]])
    assert batch["y"].shape[0] == 8 and batch["branch"].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert batch["quality"].tolist() == [90, 90, 60, 60, 30, 30, 10, 10]


def test_qabn_with_qualities_routes_each_image_by_its_tables(jpeg_folder, tmp_path):
    # One random quality per image (no versions): q90 images must reach branch 0 and q10 images branch
    # 3 alone, so the running statistics of branches 1 and 2 never move from their initial values.
    config = tiny_config(qabn=True, train_qualities=(90, 10), epochs=1, max_steps_per_epoch=3)
    result = run(config, jpeg_folder, tmp_path / "out")
    layers = [m for m in result.model.modules() if isinstance(m, QABatchNorm2d)]
    assert layers
    for layer in layers:
        moved = [not torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean)) for bn in layer.branches]
        # (QSAM's all-versions protocol would move all four.)
        assert moved == [True, False, False, True], layer


def test_versions_without_qabn_feeds_plain_bn_all_four_qualities(jpeg_folder, tmp_path):
    # QSAM's data protocol as the control for QABN: each step holds every image at 90/60/30/10.
    train_batches = []

    def record(module, args):
        if isinstance(module, torch.nn.BatchNorm2d) and module.training:
            train_batches.append(args[0].shape[0])

    hook = torch.nn.modules.module.register_module_forward_pre_hook(record)
    try:
        result = run(
            tiny_config(versions=True, batch_size=2, epochs=1, max_steps_per_epoch=2), jpeg_folder, tmp_path
        )
    finally:
        hook.remove()
    assert not is_qabn(result.model)
    assert train_batches and set(train_batches) == {2 * len(QSAM_BASE_QUALITIES)}
    assert "qabn" not in load_checkpoint(tmp_path / "best.pt").extra
    with pytest.raises(ConfigError, match="--versions"):
        tiny_config(versions=True, train_qualities=(90, 10))


def test_qac_and_qabn_train(jpeg_folder, tmp_path):
    config = tiny_config(qac=True, qabn=True, max_steps_per_epoch=1, epochs=1)
    result = run(config, jpeg_folder, tmp_path / "out")
    assert math.isfinite(result.history[0].train_loss) and result.history[0].val.images == 2
    loaded = load_checkpoint(result.best_path)
    assert is_qabn(loaded.model) and loaded.extra["qsam"]["stage"] == "base"
    # The base stage leaves the mixing MLP untouched (it belongs to the meta stage).
    mixer = result.model.qabn_mixer.net[0].weight
    assert not mixer.requires_grad
    qac_only = run(tiny_config(qac=True, epochs=1, max_steps_per_epoch=1), jpeg_folder, tmp_path / "qac")
    plain = run(tiny_config(epochs=1, max_steps_per_epoch=1), jpeg_folder, tmp_path / "plain")
    # c(Q) ~ 0.045 at the fixture's quality 75: the weighted loss is far below the plain one.
    assert qac_only.history[0].train_loss < 0.2 * plain.history[0].train_loss
    # Normalised, one quality gives every image weight 1: the very same run as plain training.
    normalized = run(
        tiny_config(qac=True, qac_normalize=True, epochs=1, max_steps_per_epoch=1),
        jpeg_folder,
        tmp_path / "n",
    )
    assert normalized.history[0].train_loss == pytest.approx(plain.history[0].train_loss, rel=1e-6)
    with pytest.raises(ConfigError, match="--qac-normalize needs --qac"):
        tiny_config(qac_normalize=True)


# ------------------------------------------------------------------------------------------ CLI


def cli_app() -> typer.Typer:
    """The real `dctq` app: a command dropped from it fails these tests."""
    return app


def test_cli_train_then_evaluate(jpeg_folder, tmp_path):
    runner = CliRunner()
    app = cli_app()
    out = tmp_path / "run"
    args = ["train", "dct_cifar_upsampling", "--data", str(jpeg_folder), "--out", str(out), "--epochs", "1"]
    args += [
        "--batch-size",
        "4",
        "--val-fraction",
        "0.25",
        "--max-steps",
        "1",
        "--arch-kwargs",
        json.dumps(TINY_DCT),
    ]
    result = runner.invoke(app, [*args, "--qualities", "90,50", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["best_epoch"] == 1 and len(report["history"]) == 1
    assert report["out_dir"] == str(out) and report["best_path"] == str(out / "best.pt")
    assert set(report) == {
        "out_dir", "best_path", "last_path", "best_epoch", "best_top1", "best_psnr", "start_epoch", "history",
        "task",
    }  # fmt: skip
    assert TrainConfig.from_dict(load_checkpoint(out / "best.pt").extra["train_config"]).train_qualities == (
        90,
        50,
    )

    evaluation = tmp_path / "eval" / "best.json"
    result = runner.invoke(
        app,
        [
            "evaluate",
            str(out / "best.pt"),
            "--data",
            str(jpeg_folder),
            "--qualities",
            "20,60",
            "--out",
            str(evaluation),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "top-1" in result.stdout and "60" in result.stdout
    rows = read_metrics(tmp_path / "eval" / "best.metrics.csv")
    saved = json.loads(evaluation.read_text())["rows"]
    assert [(r["quality"], r["images"], r["top1"]) for r in rows] == [
        (r["quality"], r["images"], r["top1"]) for r in saved
    ]

    bad = runner.invoke(app, [*args, "--qualities", "90,abc"])
    assert bad.exit_code == 1 and bad.stderr.startswith("error: --qualities")
    again = runner.invoke(app, args)
    assert again.exit_code == 1 and "--resume" in again.output
    unknown = runner.invoke(
        app, ["train", "dct_cifar_upsamplin", "--data", str(jpeg_folder), "--out", str(out)]
    )
    assert unknown.exit_code == 1 and "dct_cifar_upsampling" in unknown.output


def test_cli_train_skips_unreadable_files_with_a_count(jpeg_folder, tmp_path):
    """`--bad-files skip` leaves refused files out of both splits and says how many; `list` names them all."""
    (jpeg_folder / "cat" / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    (jpeg_folder / "dog" / "notes.jpg").write_text("text")
    args = ["train", "dct_cifar_upsampling", "--data", str(jpeg_folder), "--epochs", "1", "--batch-size", "2",
            "--max-steps", "1", "--val-fraction", "0.25", "--arch-kwargs", json.dumps(TINY_DCT)]  # fmt: skip
    listed = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "a"), "--bad-files", "list"])
    assert listed.exit_code == 1 and not (tmp_path / "a").exists()
    assert [line.split(":")[0].strip() for line in listed.stderr.splitlines()[:2]] == [
        str(jpeg_folder / "cat" / "broken.jpg"), str(jpeg_folder / "dog" / "notes.jpg"),
    ]  # fmt: skip
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "b"), "--bad-files", "skip", "--json"])
    assert result.exit_code == 0, result.output
    assert "skipped 2 unreadable file(s)" in result.stderr
    data = build_train_data(jpeg_folder, tiny_config(val_fraction=0.25), bad_files="skip")
    assert len(data.train) + len(data.val) == 8 and len(data.skipped) == 2


def test_qsam_meta_stage_trains_the_mixer_alone(jpeg_folder, tmp_path):
    config = tiny_config(qac=True, qabn=True, max_steps_per_epoch=1, epochs=1)
    data = build_train_data(jpeg_folder, config)
    base = train(config, data.train, data.val, tmp_path / "base")
    meta_config = MetaConfig(
        epochs=2, steps_per_epoch=1, batch_size=2, constant_epochs=0, eval_qualities=(50,)
    )
    ends = []
    meta = train_meta(
        meta_config, base.best_path, data.train, data.val, tmp_path / "meta", progress=ends.append
    )
    assert [e.epoch for e in ends] == [1, 2] and all(math.isfinite(e.losses.total) for e in ends)
    assert set(ends[0].val_top1) == {50}
    before = load_checkpoint(base.best_path).model.state_dict()
    after_ckpt = load_checkpoint(meta.last_path)
    after = after_ckpt.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("qabn_mixer.") for k in changed)
    assert after_ckpt.extra["qsam"]["stage"] == "meta"
    assert as_runner(meta.best_path, "cpu").qabn_routing == "mixer"  # evaluated by mixing, not oracle routing
    assert as_runner(base.best_path, "cpu").qabn_routing == "oracle"
    assert as_runner(meta.model, "cpu").qabn_routing == "mixer"  # the model train_meta returns, in memory
    assert MetaConfig.from_dict(after_ckpt.extra["meta_config"]) == meta_config
    assert meta_config.lr_factor(0) == 1.0 and meta_config.lr_factor(1) == pytest.approx(1e-3)


def test_augment_option_controls_the_padding(jpeg_folder):
    def blank_share(augment: str) -> float:
        data = build_train_data(jpeg_folder, tiny_config(augment=augment))
        data.train.reseed(0)
        ys = torch.stack([data.train[i].y for i in range(len(data.train)) for _ in range(3)])
        return float((ys == 0).all(dim=1).float().mean())

    assert blank_share("default") > 0.2  # a one-MCU shift blanks half of a 32x32 image
    assert blank_share("flip") == 0.0 and blank_share("none") == 0.0 and blank_share("crop") == 0.0
    with pytest.raises(ConfigError, match="--augment"):
        tiny_config(augment="shift")


def test_cli_train_meta_after_a_qabn_base_stage(jpeg_folder, tmp_path):
    runner, app = CliRunner(), cli_app()
    base_args = ["train", "dct_cifar_upsampling", "--data", str(jpeg_folder), "--epochs", "1",
                 "--max-steps", "1", "--val-fraction", "0.25"]  # fmt: skip
    base = runner.invoke(app, [*base_args, "--out", str(tmp_path / "base"), "--qabn", "--batch-size", "2"])
    assert base.exit_code == 0, base.output
    meta_args = ["--data", str(jpeg_folder), "--epochs", "2", "--steps", "1", "--batch-size", "2"]
    result = runner.invoke(
        app,
        ["train-meta", str(tmp_path / "base" / "best.pt"), "--out", str(tmp_path / "meta"), *meta_args,
         "--eval-qualities", "50,20", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [h["epoch"] for h in report["history"]] == [1, 2]
    assert set(report["history"][0]["val_top1"]) == {"50", "20"}
    best = report["history"][report["best_epoch"] - 1]
    assert report["best_mean_top1"] == pytest.approx(sum(best["val_top1"].values()) / 2)
    meta = load_checkpoint(report["best_path"])
    assert (
        meta.extra["qsam"]["stage"] == "meta"
        and as_runner(report["best_path"], "cpu").qabn_routing == "mixer"
    )
    # The meta stage keeps the base run's split: its saved training config travels along.
    assert meta.extra["train_config"] == load_checkpoint(tmp_path / "base" / "best.pt").extra["train_config"]

    plain = runner.invoke(app, [*base_args, "--out", str(tmp_path / "plain")])
    assert plain.exit_code == 0, plain.output
    no_qabn = runner.invoke(
        app, ["train-meta", str(tmp_path / "plain" / "best.pt"), "--out", str(tmp_path / "m2"), *meta_args]
    )
    assert no_qabn.exit_code == 1 and "--qabn" in no_qabn.output
    missing = runner.invoke(
        app, ["train-meta", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "m3"), *meta_args]
    )
    assert missing.exit_code == 1 and "nope.pt" in missing.output
    bad = runner.invoke(
        app,
        [
            "train-meta",
            str(tmp_path / "base" / "best.pt"),
            "--out",
            str(tmp_path / "m4"),
            *meta_args,
            "--held-out",
            "x",
        ],
    )
    assert bad.exit_code == 1 and "--held-out" in bad.output
