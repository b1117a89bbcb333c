"""The files of a training run's folder, written after every epoch and read back to resume the run.

- `last.state.pt`: everything `resume=True` needs (the epoch's checkpoint, optimizer, schedule,
  gradient scaler, best so far, history), plain tensors and data that `torch.load(weights_only=True)`
  reads;
- `last.pt` / `best.pt`: dctq checkpoints (models.checkpoint) of the last and the best epoch (by
  the task's validation score: top-1, PSNR for SR models, minus an autoencoder's bits/dim; tasks.py), `extra` holding the TrainConfig, the epoch and its validation metrics;
- `metrics.csv`: the run record, one row per epoch so far (the flattened EpochEnd: epoch, train_loss,
  train_top1, val_loss, val_top1, ..., is_best, seconds, lr; common/records.py), for `dctq report`.

Every file is written atomically, and in this order: the state (the commit point of the epoch), then
best.pt, then last.pt (then metrics.csv, which is rewritten whole from the history every epoch). A kill
anywhere leaves the state of the last epoch whose state was written, and last.pt / best.pt at most one
epoch behind it; `load_run` rewrites them from the state, so a killed run resumes as if it had not been
killed and its best.pt is the best epoch's. (Before, the state was written first without the weights, so
a kill before last.pt made the run impossible to resume, and a kill before the best.pt copy left best.pt
an epoch behind the best the state reported.)
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from ...common.errors import ConfigError, DataError, ModelError
from ...common.files import atomic_path
from ...common.records import METRICS_CSV, write_metrics
from ...common.torch_files import load_torch_file
from ...jpeg.input_policy import default_policy
from ...models.checkpoint import checkpoint_payload, write_checkpoint
from ...models.qabn import QSAM_BASE_QUALITIES
from ...models.registry import get_model_info
from .config import TrainConfig
from .events import EpochEnd, ValMetrics, epoch_end_from_dict

LAST, BEST, STATE = "last.pt", "best.pt", "last.state.pt"
STATE_FORMAT = "dctq.train_state"
STATE_VERSION = 2
"""2: the state holds its epoch's checkpoint (1: the weights were last.pt's alone)."""
_CUT_SHORT = "; was it cut short?"

logger = logging.getLogger(__name__)


class RunProgress(NamedTuple):
    """How far a run got: epochs done, the best epoch and its score (the task's, tasks.py: a classifier's
    validation top-1, an SR model's PSNR, minus an autoencoder's bits/dim), every EpochEnd."""

    epoch: int
    best_epoch: int
    best_score: float | None
    history: list[EpochEnd]


def check_no_run(out_dir: Path) -> None:
    """Raise DataError when `out_dir` already holds a run, which only `resume` may continue; else remove
    the temporary files a run killed before its first epoch's state left there."""
    remove_stale_writes(out_dir)
    for name in (STATE, LAST):
        if (out_dir / name).exists():
            raise DataError(
                f"{out_dir} already holds a run ({name}); pass --resume to continue it or choose another --out"
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
    """Write last.state.pt, then best.pt when `is_best`, then last.pt, for the epoch `progress.epoch` ends
    (the order the module docstring explains), then metrics.csv with every epoch of `progress.history`."""
    info = get_model_info(config.arch)
    extra: dict[str, Any] = {
        "train_config": config.to_dict(),
        "input_policy": default_policy(info.input_kind, info.input_size).to_dict(),  # = train_input_policy
        "epoch": progress.epoch,
        "val": dataclasses.asdict(val) if val is not None else None,
        "epoch_seconds": [h.seconds for h in progress.history],
    }
    if config.qabn:
        extra["qabn"] = {"num_branches": len(QSAM_BASE_QUALITIES)}
        extra["qsam"] = {"stage": "base", "base_qualities": list(QSAM_BASE_QUALITIES)}
    checkpoint = checkpoint_payload(
        model, arch=config.arch, arch_kwargs=arch_kwargs, class_names=class_names, extra=extra
    )
    state = {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        "epoch": progress.epoch,
        "checkpoint": checkpoint,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "best_epoch": progress.best_epoch,
        "best_score": progress.best_score,
        "history": [dataclasses.asdict(h) for h in progress.history],
    }
    write_epoch(out_dir, state, is_best=is_best)
    write_metrics(out_dir / METRICS_CSV, progress.history)


def write_epoch(out_dir: Path, state: dict[str, Any], *, is_best: bool) -> None:
    """Write an epoch loop's files in the order the module docstring explains: `state` (which holds the
    epoch's checkpoint under "checkpoint") as last.state.pt, then best.pt when `is_best`, then last.pt.
    Training (save_epoch) and QSAM's meta stage write their epochs through it."""
    with atomic_path(out_dir / STATE) as tmp:
        torch.save(state, tmp)
    if is_best:
        write_checkpoint(out_dir / BEST, state["checkpoint"])
    write_checkpoint(out_dir / LAST, state["checkpoint"])


def read_epoch_state(
    out_dir: Path, fmt: str, what: str, device: torch.device | str = "cpu"
) -> dict[str, Any]:
    """The last.state.pt of an epoch loop (format marker `fmt`, e.g. "dctq.meta_state"), for resuming.

    Raises DataError when there is none, ModelError when it is unreadable or of another kind.
    """
    state_path = out_dir / STATE
    if not state_path.is_file():
        raise DataError(f"--resume: {out_dir} has no {STATE} to resume from; drop --resume to start afresh")
    return load_torch_file(state_path, what, ModelError, fmt=fmt, map_location=device, hint=_CUT_SHORT)


def load_run(
    out_dir: Path,
    config: TrainConfig,
    device: torch.device,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler | None,
    *,
    repair: bool = True,
) -> RunProgress:
    """Load the run saved in `out_dir` into `model`, `optimizer`, `scheduler` and `scaler` (None: a
    run without AMP, which leaves the saved scaler state unused); returns how far it got.

    The state file decides: last.pt and best.pt left behind by a kill (module docstring) are rewritten
    from it when `repair` (the process that writes the run's files: rank 0), and the temporary files of
    writes a kill cut short are removed.

    Raises:
        DataError: no last.state.pt (or, for a run saved by an older dctq, no last.pt). ModelError:
            unreadable or mismatched files. ConfigError: `config` differs from the saved one beyond
            TrainConfig.RESUMABLE.
    """
    last, state_path = out_dir / LAST, out_dir / STATE
    missing = DataError(
        f"--resume: {out_dir} has no {STATE} (and {LAST}) to resume from; drop --resume to start afresh"
    )
    if not state_path.is_file():
        raise missing
    state = load_torch_file(
        state_path, "dctq training state", ModelError, fmt=STATE_FORMAT, map_location=device, hint=_CUT_SHORT
    )
    payload = state.get("checkpoint")
    if payload is None:  # a state of version 1: the weights are last.pt's, which must be of the same epoch
        if not last.is_file():
            raise missing
        payload = load_torch_file(last, "dctq checkpoint", ModelError, hint=_CUT_SHORT)
        if payload.get("extra", {}).get("epoch") != state["epoch"]:
            raise ModelError(
                f"{last} (epoch {payload.get('extra', {}).get('epoch')}) and {state_path} (epoch "
                f"{state['epoch']}) disagree: the run was stopped while saving; restart it without --resume "
                "in a new --out"
            )
    extra = payload.get("extra", {})
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
    if repair and "checkpoint" in state:
        repair_epoch_files(out_dir, state)
    history = [epoch_end_from_dict(h) for h in state["history"]]
    # States written before tasks existed call the score "best_top1" (it was the top-1).
    best = state["best_score"] if "best_score" in state else state.get("best_top1")
    return RunProgress(state["epoch"], state["best_epoch"], best, history)


def remove_stale_writes(out_dir: Path) -> None:
    """Remove the temporary files (common.files.atomic_path's `.<name>.*.tmp`) of the run's own files that
    a killed write left in `out_dir`; nothing else is touched."""
    for name in (STATE, BEST, LAST, METRICS_CSV):
        for stale in out_dir.glob(f".{name}.*.tmp"):
            stale.unlink(missing_ok=True)


def _saved_epoch(path: Path) -> int | None:
    """The epoch a checkpoint of the run records, None when it is missing or unreadable."""
    if not path.is_file():
        return None
    try:
        return load_torch_file(path, "dctq checkpoint", ModelError).get("extra", {}).get("epoch")
    except ModelError:
        return None


def repair_epoch_files(out_dir: Path, state: dict[str, Any]) -> None:
    """Rewrite last.pt (and best.pt, when the state's epoch is the best) from the state (`write_epoch`'s)
    where a kill left them behind it; remove the temporary files of cut-short writes."""
    remove_stale_writes(out_dir)
    epoch, payload = state["epoch"], state["checkpoint"]
    if state["best_epoch"] == epoch and _saved_epoch(out_dir / BEST) != epoch:
        logger.warning(
            "%s: best.pt was an epoch behind (the run was stopped while saving); rewritten", out_dir
        )
        write_checkpoint(out_dir / BEST, payload)
    if _saved_epoch(out_dir / LAST) != epoch:
        logger.warning(
            "%s: last.pt was an epoch behind (the run was stopped while saving); rewritten", out_dir
        )
        write_checkpoint(out_dir / LAST, payload)
