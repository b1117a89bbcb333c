"""What a training run reports while it goes (events for progress bars) and what it returns."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn


@dataclasses.dataclass(frozen=True)
class EpochStart:
    """An epoch begins (epoch counts from 1)."""

    epoch: int
    epochs: int
    steps: int


@dataclasses.dataclass(frozen=True)
class StepEnd:
    """Every `log_every` steps: means over the steps since the last event (rank 0's shard). `top1` is the
    training accuracy of classifiers, `psnr` (dB on Y of the training patches, not rounded to 8 bits) that
    of SR models (None for other tasks); `metrics` the task's other running means (an autoencoder's
    reconstruction loss "recon" and latent loss "latent")."""

    epoch: int
    step: int
    steps: int
    loss: float
    top1: float | None
    images_per_second: float
    lr: float
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    psnr: float | None = None


@dataclasses.dataclass(frozen=True)
class ValMetrics:
    """Validation over all processes. Classifiers: plain cross-entropy, top-1/top-5 in [0, 1]. SR models:
    L1 loss, mean PSNR (dB) and SSIM over the images (Y channel, `scale` border cropped, 8-bit output).
    Autoencoders: `loss` is the bits/dim (lower is better), top-1/top-5 are None and `metrics` holds the
    task's report (models.dq.rate.CodeStats.summary). What selects best.pt is the task's `score`
    (calibration.train.tasks)."""

    loss: float
    top1: float | None
    top5: float | None
    images: int
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    psnr: float | None = None
    ssim: float | None = None


@dataclasses.dataclass(frozen=True)
class EpochEnd:
    """An epoch ended and its checkpoints are written; train_* are means over all processes."""

    epoch: int
    epochs: int
    train_loss: float
    train_top1: float | None
    val: ValMetrics | None
    is_best: bool
    seconds: float
    lr: float
    train_metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    train_psnr: float | None = None


TrainEvent = EpochStart | StepEnd | EpochEnd
ProgressCallback = Callable[[TrainEvent], None]


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What a run produced. `model` is the trained model (last epoch, eval mode, unwrapped). `best_top1`:
    the best epoch's validation top-1 (classifiers; None for other tasks and runs without validation);
    `best_psnr`: its PSNR (SR models);
    `task`: the model's task (models.registry.TASKS)."""

    out_dir: Path
    best_path: Path
    last_path: Path
    best_epoch: int
    best_top1: float | None
    start_epoch: int
    history: tuple[EpochEnd, ...]
    model: nn.Module = dataclasses.field(repr=False, compare=False)
    task: str = "classify"
    best_psnr: float | None = None

    @property
    def best_val(self) -> ValMetrics | None:
        """The validation metrics of the best epoch (None without validation)."""
        for epoch in self.history:
            if epoch.epoch == self.best_epoch:
                return epoch.val
        return None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (`dctq train --json`), without the model: paths as strings, each epoch of the
        history as a plain dict."""
        return {
            "out_dir": str(self.out_dir),
            "best_path": str(self.best_path),
            "last_path": str(self.last_path),
            "best_epoch": self.best_epoch,
            "best_top1": self.best_top1,
            "best_psnr": self.best_psnr,
            "start_epoch": self.start_epoch,
            "history": [dataclasses.asdict(h) for h in self.history],
            "task": self.task,
        }


def epoch_end_from_dict(d: dict[str, Any]) -> EpochEnd:
    """Inverse of dataclasses.asdict for an EpochEnd (as kept in last.state.pt)."""
    val = ValMetrics(**d["val"]) if d.get("val") is not None else None  # older files lack psnr/ssim: defaults
    return EpochEnd(**{**d, "val": val})
