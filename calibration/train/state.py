"""The files of a training run's folder, written after every epoch and read back to resume the run.

- `last.pt` / `best.pt`: dctq checkpoints (models.checkpoint) of the last and the best epoch (by
  the task's validation score, tasks.py), `extra` holding the TrainConfig, the epoch and its validation metrics;
- `last.state.pt`: what `resume=True` needs besides the weights (optimizer, schedule, gradient
  scaler, best so far, history), plain tensors and data that `torch.load(weights_only=True)` reads.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from ...common.errors import ConfigError, DataError, ModelError
from ...common.files import atomic_path
from ...common.torch_files import load_torch_file
from ...models.checkpoint import save_checkpoint
from ...models.qabn import QSAM_BASE_QUALITIES
from .config import TrainConfig
from .events import EpochEnd, ValMetrics, epoch_end_from_dict

LAST, BEST, STATE = "last.pt", "best.pt", "last.state.pt"
STATE_FORMAT = "dctq.train_state"
_CUT_SHORT = "; was it cut short?"


class RunProgress(NamedTuple):
    """How far a run got: epochs done, the best epoch and its score (the task's: a classifier's validation
    top-1, minus an autoencoder's bits/dim), every EpochEnd."""

    epoch: int
    best_epoch: int
    best_score: float | None
    history: list[EpochEnd]


def check_no_run(out_dir: Path) -> None:
    """Raise DataError when `out_dir` already holds a run, which only `resume` may continue."""
    if (out_dir / LAST).exists():
        raise DataError(
            f"{out_dir} already holds a run ({LAST}); pass --resume to continue it or choose another --out"
        )


def save_epoch(
    out_dir: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    progress: RunProgress,
    *,
    config: TrainConfig,
    arch_kwargs: dict[str, Any],
    class_names: list[str],
    val: ValMetrics | None,
    is_best: bool,
) -> None:
    """Write last.state.pt and last.pt for the epoch `progress.epoch` ends, and best.pt when `is_best`."""
    extra: dict[str, Any] = {
        "train_config": config.to_dict(),
        "epoch": progress.epoch,
        "val": dataclasses.asdict(val) if val is not None else None,
        "epoch_seconds": [h.seconds for h in progress.history],
    }
    if config.qabn:
        extra["qabn"] = {"num_branches": len(QSAM_BASE_QUALITIES)}
        extra["qsam"] = {"stage": "base", "base_qualities": list(QSAM_BASE_QUALITIES)}
    state = {
        "format": STATE_FORMAT,
        "version": 1,
        "epoch": progress.epoch,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "best_epoch": progress.best_epoch,
        "best_score": progress.best_score,
        "history": [dataclasses.asdict(h) for h in progress.history],
    }
    with atomic_path(out_dir / STATE) as tmp:
        torch.save(state, tmp)
    save_last_and_best(
        out_dir,
        model,
        arch=config.arch,
        arch_kwargs=arch_kwargs,
        class_names=class_names,
        extra=extra,
        is_best=is_best,
    )


def save_last_and_best(
    out_dir: Path,
    model: nn.Module,
    *,
    arch: str,
    arch_kwargs: dict[str, Any],
    class_names: list[str],
    extra: dict[str, Any],
    is_best: bool,
) -> Path:
    """Write `out_dir`/last.pt and, when `is_best`, copy it to best.pt (each atomically); returns last.pt.
    The checkpoints of every epoch loop (training, QSAM's meta stage)."""
    last = save_checkpoint(
        out_dir / LAST, model, arch=arch, arch_kwargs=arch_kwargs, class_names=class_names, extra=extra
    )
    if is_best:
        with atomic_path(out_dir / BEST) as tmp:
            shutil.copyfile(last, tmp)
    return last


def load_run(
    out_dir: Path,
    config: TrainConfig,
    device: torch.device,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler | None,
) -> RunProgress:
    """Load the run saved in `out_dir` into `model`, `optimizer`, `scheduler` and `scaler` (None: a
    run without AMP, which leaves the saved scaler state unused); returns how far it got.

    Raises:
        DataError: no last.pt and last.state.pt. ModelError: unreadable or mismatched files.
        ConfigError: `config` differs from the saved one beyond TrainConfig.RESUMABLE.
    """
    last, state_path = out_dir / LAST, out_dir / STATE
    if not (last.is_file() and state_path.is_file()):
        raise DataError(
            f"--resume: {out_dir} has no {LAST} and {STATE} to resume from; drop --resume to start afresh"
        )
    payload = load_torch_file(last, "dctq checkpoint", ModelError, hint=_CUT_SHORT)
    state = load_torch_file(
        state_path, "dctq training state", ModelError, fmt=STATE_FORMAT, map_location=device, hint=_CUT_SHORT
    )
    extra = payload.get("extra", {})
    if extra.get("epoch") != state["epoch"]:
        raise ModelError(
            f"{last} (epoch {extra.get('epoch')}) and {state_path} (epoch {state['epoch']}) disagree: "
            "the run was stopped while saving; restart it without --resume in a new --out"
        )
    saved = TrainConfig.from_dict(extra["train_config"])
    changed = list(saved.changes(config))
    if changed:
        raise ConfigError(
            f"--resume: options {changed} differ from the run saved in {out_dir}; "
            f"only {list(TrainConfig.RESUMABLE)} may change"
        )
    model.load_state_dict(payload["state_dict"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if state["scaler"] and scaler is not None:  # empty when saved without AMP (e.g. on CPU)
        scaler.load_state_dict(state["scaler"])
    history = [epoch_end_from_dict(h) for h in state["history"]]
    # States written before tasks existed call the score "best_top1" (it was the top-1).
    best = state["best_score"] if "best_score" in state else state.get("best_top1")
    return RunProgress(state["epoch"], state["best_epoch"], best, history)
