"""The training loop on an autoencoder (task "autoencode"): Adam defaults, bits/dim validation, resume, CLI."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import typer
from typer.testing import CliRunner

from dctq.calibration.train.config import TrainConfig, config_for
from dctq.calibration.train.data import build_train_data
from dctq.calibration.train.loop import EpochEnd, StepEnd, train
from dctq.cli import train_cmd
from dctq.common.errors import ConfigError
from dctq.models.checkpoint import load_checkpoint
from dctq.models.dq.autoencoder import HierarchicalAE

TINY_AE = {"channels": 8, "res_channels": 4, "code_dim": 2, "levels": [8, 8], "n_mix": 2, "num_codebooks": 2}


def ae_config(**changes) -> TrainConfig:
    base = {"arch_kwargs": TINY_AE, "epochs": 2, "batch_size": 4, "val_fraction": 0.25, "log_every": 1}
    return config_for("dq_ae_cpu", **{**base, **changes})


def test_config_takes_the_models_train_defaults_under_the_options():
    config = ae_config(lr=1e-3)
    assert (config.optimizer, config.lr, config.schedule, config.clip_grad_norm) == (
        "adam",
        1e-3,
        "constant",
        2.0,
    )
    assert config.weight_decay == 0.0 and config.augment == "flip"
    assert config_for("resnet20").optimizer == "sgd"  # classifiers keep TrainConfig's defaults
    with pytest.raises(ConfigError, match="--optimizer"):
        ae_config(optimizer="lamb")
    with pytest.raises(ConfigError, match="--clip-grad-norm"):
        ae_config(clip_grad_norm=0.0)


@pytest.mark.parametrize("option", [{"qabn": True}, {"qac": True}, {"label_smoothing": 0.1}])
def test_classifier_options_are_refused(jpeg_folder, tmp_path, option):
    config = ae_config(**option)
    data = build_train_data(jpeg_folder, config)
    with pytest.raises(ConfigError, match="classifiers only"):
        train(config, data.train, data.val, tmp_path / "out")


def test_trains_validates_in_bits_per_dim_and_resumes_exactly(jpeg_folder, tmp_path):
    config = ae_config(max_steps_per_epoch=2)
    data = build_train_data(jpeg_folder, config)
    events = []
    straight = train(config, data.train, data.val, tmp_path / "a", progress=events.append)
    steps = [e for e in events if isinstance(e, StepEnd)]
    assert steps and all(e.top1 is None and set(e.metrics) == {"recon", "latent"} for e in steps)
    ends = [e for e in events if isinstance(e, EpochEnd)]
    val = ends[-1].val
    assert val.top1 is None and val.images == 2
    m = val.metrics
    # bits/dim: the uniform bound = reconstruction NLL + 2 levels x 2 codebooks x log2(8) bits per position
    assert m["code_bits_uniform"] == 2 * 3 * (64 + 16)
    assert val.loss == pytest.approx(m["recon_bpd"] + m["code_bits_uniform"] / 3072)
    assert 0 < m["recon_bpd"] < 12 and 0 < m["psnr_rgb"] < 100
    assert straight.task == "autoencode" and straight.best_top1 is None
    assert straight.best_val == next(h.val for h in straight.history if h.epoch == straight.best_epoch)
    loaded = load_checkpoint(tmp_path / "a" / "last.pt")
    assert isinstance(loaded.model, HierarchicalAE) and loaded.class_names == []
    assert loaded.arch_kwargs == TINY_AE and len(loaded.extra["epoch_seconds"]) == 2

    class Killed(Exception):
        pass

    def kill(event):
        if isinstance(event, EpochEnd) and event.epoch == 1:
            raise Killed

    with pytest.raises(Killed):
        train(config, data.train, data.val, tmp_path / "b", progress=kill)
    resumed = train(config, data.train, data.val, tmp_path / "b", resume=True)
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # codebooks (EMA buffers) included
    timeless = [dataclasses.replace(h, seconds=0.0) for h in straight.history]
    assert [dataclasses.replace(h, seconds=0.0) for h in resumed.history] == timeless


def test_cli_trains_an_autoencoder(jpeg_folder, tmp_path):
    app = typer.Typer()
    train_cmd.register(app)
    out = tmp_path / "run"
    args = [
        str(a) for a in ("dq_ae_cpu", "--data", jpeg_folder, "--out", out, "--epochs", 1, "--batch-size", 4)
    ]
    args += ["--val-fraction", "0.25", "--max-steps", "1", "--arch-kwargs", json.dumps(TINY_AE)]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["task"] == "autoencode" and report["best_top1"] is None
    assert report["history"][0]["val"]["metrics"]["bpd_uniform"] > 0
    saved = TrainConfig.from_dict(load_checkpoint(out / "best.pt").extra["train_config"])
    assert saved.optimizer == "adam" and saved.lr == 2e-4
    table = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "run2")])
    assert table.exit_code == 0 and "bits/dim" in table.output
    refused = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "run3"), "--qabn"])
    assert refused.exit_code == 1 and "classifiers only" in refused.output
