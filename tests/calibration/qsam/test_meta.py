"""calibration/qsam/meta.py: QSAM's meta stage killed between any two of its writes (a real SIGKILL of
a forked process, helpers.run_killed_at_write) resumes to the stage that was not killed."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import torch
from helpers import TINY, run_killed_at_write

from dctq.calibration.qsam.config import MetaConfig
from dctq.calibration.qsam.meta import train_meta
from dctq.calibration.train.config import TrainConfig
from dctq.calibration.train.data import build_train_data
from dctq.calibration.train.loop import train
from dctq.calibration.train.state import BEST, LAST, STATE
from dctq.common.errors import ConfigError, DataError

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the kills fork a training process")

META = MetaConfig(epochs=2, steps_per_epoch=1, batch_size=2, constant_epochs=0, eval_qualities=(50, 20))


@pytest.fixture
def base(jpeg_folder, tmp_path):
    """(data, best.pt) of a one-step QABN base stage."""
    config = TrainConfig(
        arch="dct_cifar_upsampling", arch_kwargs=TINY, epochs=1, batch_size=4, val_fraction=0.25,
        stem_stats_batches=2, max_steps_per_epoch=1, qabn=True, qac=True,
    )  # fmt: skip
    data = build_train_data(jpeg_folder, config)
    return data, train(config, data.train, data.val, tmp_path / "base").best_path


def _meta(base, out: Path, *, resume: bool = False, config: MetaConfig = META):
    data, checkpoint = base
    return train_meta(config, checkpoint, data.train, data.val, out, resume=resume)


def _file(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_every_kill_point_of_the_meta_stage_resumes_to_the_stage_that_was_not_killed(base, tmp_path):
    straight = _meta(base, tmp_path / "straight")
    want = {name: _file(tmp_path / "straight" / name) for name in (LAST, BEST)}
    timeless = [dataclasses.replace(h, seconds=0.0) for h in straight.history]
    kill_at, reached = 1, []
    while True:
        out, log = tmp_path / f"killed-{kill_at}", tmp_path / f"killed-{kill_at}.log"
        if not run_killed_at_write(lambda out=out: _meta(base, out), kill_at, log):
            break
        reached.append(log.read_text().split()[-1])
        if (out / BEST).exists() and (
            out / LAST
        ).exists():  # what the kill left: never a last better than best
            last, best = _file(out / LAST)["extra"]["val_top1"], _file(out / BEST)["extra"]["val_top1"]
            assert sum(best.values()) >= sum(last.values())
        resumed = _meta(base, out, resume=(out / STATE).exists())
        assert [dataclasses.replace(h, seconds=0.0) for h in resumed.history] == timeless
        assert resumed.best_epoch == straight.best_epoch
        for name in (LAST, BEST):
            assert _same(_file(out / name)["state_dict"], want[name]["state_dict"]), (kill_at, name)
            assert _file(out / name)["extra"]["epoch"] == want[name]["extra"]["epoch"]
        assert not list(out.glob(".*.tmp"))
        kill_at += 1
    assert reached[:3] == [STATE, BEST, LAST] and reached[3] == STATE and reached[-1] == LAST


def test_meta_resume_checks_its_options_and_its_folder(base, tmp_path):
    out = tmp_path / "meta"
    _meta(base, out, config=dataclasses.replace(META, epochs=1))
    with pytest.raises(DataError, match="already holds a run"):
        _meta(base, out, config=dataclasses.replace(META, epochs=1))
    with pytest.raises(ConfigError, match=r"options \['epochs'\] differ"):
        _meta(base, out, resume=True)
    with pytest.raises(DataError, match=r"no last\.state\.pt"):
        _meta(base, tmp_path / "none", resume=True)
