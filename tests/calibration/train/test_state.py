"""calibration/train/state.py: a training run killed between any two of its writes resumes to exactly
the run that was not killed, and its best.pt is then the best epoch's. Each kill is a real SIGKILL of a
process in the middle of training (helpers.run_killed_at_write)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from helpers import TINY, run_killed_at_write

from dctq.calibration.train.config import TrainConfig
from dctq.calibration.train.data import build_train_data
from dctq.calibration.train.loop import train
from dctq.calibration.train.state import BEST, LAST, STATE
from dctq.common.errors import DataError
from dctq.common.records import METRICS_CSV

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the kills fork a training process")

CONFIG = TrainConfig(
    arch="dct_cifar_upsampling", arch_kwargs=TINY, epochs=2, batch_size=4, lr=0.05, val_fraction=0.25,
    stem_stats_batches=2, max_steps_per_epoch=2,
)  # fmt: skip


def _run(folder: Path, out: Path, *, resume: bool = False, val: bool = False):
    data = build_train_data(folder, CONFIG)
    return train(CONFIG, data.train, data.val if val else None, out, resume=resume)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_every_kill_point_of_an_epoch_resumes_to_the_run_that_was_not_killed(jpeg_folder, tmp_path):
    """Without validation every epoch is the best: four writes per epoch (state, best.pt, last.pt, then the
    metrics.csv record), killed before each of them in turn."""
    straight = _run(jpeg_folder, tmp_path / "straight")
    want_last, want_best = _weights(tmp_path / "straight" / LAST), _weights(tmp_path / "straight" / BEST)
    kill_at, reached = 1, []
    while True:
        out, log = tmp_path / f"killed-{kill_at}", tmp_path / f"killed-{kill_at}.log"
        if not run_killed_at_write(lambda out=out: _run(jpeg_folder, out), kill_at, log):
            break
        reached.append(log.read_text().split()[-1])
        if (out / STATE).exists():
            resumed = _run(jpeg_folder, out, resume=True)
        else:  # killed before the first epoch's state: nothing to resume, and no --resume needed
            assert not (out / LAST).exists() and not (out / BEST).exists()
            resumed = _run(jpeg_folder, out)
        assert _same(resumed.model.state_dict(), straight.model.state_dict()), (
            f"killed before write {kill_at}"
        )
        assert _same(_weights(out / LAST), want_last) and _same(_weights(out / BEST), want_best)
        assert torch.load(out / BEST, weights_only=True)["extra"]["epoch"] == resumed.best_epoch == 2
        assert not list(out.glob(".*.tmp")), "a killed write's temporary file was left behind"
        kill_at += 1
    assert reached == [STATE, BEST, LAST, METRICS_CSV] * 2


def test_a_kill_before_best_pt_no_longer_leaves_it_an_epoch_behind(jpeg_folder, tmp_path):
    """The issue's case: killed between the state of a new best epoch and best.pt, the run resumed
    reporting the new best while best.pt still held the old one."""
    out, log = tmp_path / "run", tmp_path / "run.log"
    # writes per epoch: state, best.pt (when best), last.pt, metrics.csv; write 6 is epoch 2's best.pt
    assert run_killed_at_write(lambda: _run(jpeg_folder, out), 6, log)  # epoch 2: state written, then killed
    assert torch.load(out / BEST, weights_only=True)["extra"]["epoch"] == 1  # what the kill left
    result = _run(jpeg_folder, out, resume=True)
    assert result.start_epoch == 2 and result.best_epoch == 2
    assert torch.load(out / BEST, weights_only=True)["extra"]["epoch"] == 2


def test_killed_runs_with_validation_resume_too(jpeg_folder, tmp_path):
    straight = _run(jpeg_folder, tmp_path / "straight", val=True)
    for kill_at in (2, 3, 4):
        out = tmp_path / f"killed-{kill_at}"
        killed = run_killed_at_write(
            lambda out=out: _run(jpeg_folder, out, val=True), kill_at, tmp_path / "log"
        )
        if not killed:
            continue
        resumed = _run(jpeg_folder, out, resume=True, val=True)
        assert _same(resumed.model.state_dict(), straight.model.state_dict())
        assert resumed.best_epoch == straight.best_epoch
        best = torch.load(out / BEST, weights_only=True)["extra"]["epoch"]
        assert best == straight.best_epoch and _same(
            _weights(out / BEST), _weights(tmp_path / "straight" / BEST)
        )
    with pytest.raises(DataError, match="already holds a run"):
        _run(jpeg_folder, tmp_path / "straight", val=True)
