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
    """Every `log_every` steps: means over the steps since the last event (rank 0's shard). top1 for
    classifiers, psnr (dB on Y of the training patches, not rounded to 8 bits) for SR models."""

    epoch: int
    step: int
    steps: int
    loss: float
    top1: float | None
    images_per_second: float
    lr: float
    psnr: float | None = None


@dataclasses.dataclass(frozen=True)
class ValMetrics:
    """Validation over all processes. Classifiers: plain cross-entropy, top-1/top-5 in [0, 1]. SR models:
    L1 loss, mean PSNR (dB) and SSIM over the images (Y channel, `scale` border cropped, 8-bit output)."""

    loss: float
    top1: float | None
    top5: float | None
    images: int
    psnr: float | None = None
    ssim: float | None = None

    @property
    def score(self) -> float:
        """What selects best.pt (higher is better): PSNR for SR models, else top-1."""
        value = self.psnr if self.psnr is not None else self.top1
        return float("-inf") if value is None else value


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
    train_psnr: float | None = None


TrainEvent = EpochStart | StepEnd | EpochEnd
ProgressCallback = Callable[[TrainEvent], None]


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What a run produced. `model` is the trained model (last epoch, eval mode, unwrapped)."""

    out_dir: Path
    best_path: Path
    last_path: Path
    best_epoch: int
    best_top1: float | None
    start_epoch: int
    history: tuple[EpochEnd, ...]
    model: nn.Module = dataclasses.field(repr=False, compare=False)
    best_psnr: float | None = None

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
        }


def epoch_end_from_dict(d: dict[str, Any]) -> EpochEnd:
    """Inverse of dataclasses.asdict for an EpochEnd (as kept in last.state.pt)."""
    val = ValMetrics(**d["val"]) if d.get("val") is not None else None  # older files lack psnr/ssim: defaults
    return EpochEnd(**{**d, "val": val})
