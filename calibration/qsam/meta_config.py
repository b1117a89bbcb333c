"""MetaConfig (the options of QSAM's meta stage) and what `qsam_train.train_meta` reports: an event
per epoch and the result of the stage.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ...jpeg.recompress import QSAM_META_TEST_QUALITIES
from ...models.qabn import QSAM_BASE_QUALITIES
from ..train.config import ConfigError
from .meta_step import MetaStepLosses


@dataclass(frozen=True)
class MetaConfig:
    """QSAM's meta stage: learn the QABN mixing MLP alone, backbone and BN branches frozen."""

    epochs: int = 150
    """Meta epochs (QSAM: 150)."""

    steps_per_epoch: int | None = None
    """Episodes per epoch; None = training images // batch_size (QSAM: 390 on CIFAR)."""

    batch_size: int = 128
    """Images in each meta-train and meta-test batch."""

    lr: float = 0.004
    """Adam learning rate of the mixer, constant for `constant_epochs`, then decayed to lr * final_factor."""

    weight_decay: float = 5e-4
    constant_epochs: int = 20
    final_factor: float = 1e-3
    inner_lr: float = 1e-3
    """Step size of the inner (MAML) SGD step on the mixer."""

    test_weight: float = 1.0
    base_weight: float = 1.0
    qac: bool = True
    """Weight the episode losses by c(Q), as QSAM does."""

    base_qualities: tuple[int, ...] = QSAM_BASE_QUALITIES
    held_out_qualities: tuple[int, ...] = QSAM_META_TEST_QUALITIES
    eval_qualities: tuple[int, ...] = (90, 70, 50, 30, 10)
    """Validation qualities; the best epoch has the best mean top-1 over them (QSAM: 18 anchors)."""

    seed: int = 0
    num_workers: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"MetaConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ConfigError(f"MetaConfig.steps_per_epoch must be >= 1, got {self.steps_per_epoch}")
        if self.lr <= 0 or not 0 < self.final_factor <= 1 or self.constant_epochs < 0:
            raise ConfigError("MetaConfig needs lr > 0, final_factor in (0, 1] and constant_epochs >= 0")
        for name in ("base_qualities", "held_out_qualities", "eval_qualities"):
            object.__setattr__(self, name, tuple(int(q) for q in getattr(self, name)))
            if not getattr(self, name) or not all(1 <= q <= 100 for q in getattr(self, name)):
                raise ConfigError(
                    f"MetaConfig.{name} must be JPEG qualities in 1..100, got {getattr(self, name)}"
                )

    def lr_factor(self, epoch: int) -> float:
        """QSAM's schedule: 1 up to `constant_epochs`, then exponential down to `final_factor` at the end."""
        decay = self.epochs - (self.constant_epochs + 1)
        if epoch < self.constant_epochs or decay <= 0:
            return 1.0
        return self.final_factor ** ((epoch - self.constant_epochs) / decay)

    def to_dict(self) -> dict[str, Any]:
        """{"type", "version", "fields"} with plain values, as TrainConfig.to_dict."""
        fields = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}
        return {"type": type(self).__name__, "version": 1, "fields": fields}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MetaConfig:
        """Inverse of to_dict(). Raises ConfigError for another type or version."""
        if data.get("type") != cls.__name__ or data.get("version") != 1:
            raise ConfigError(
                f"not a saved {cls.__name__} of version 1: {data.get('type')} {data.get('version')}"
            )
        return cls(**data["fields"])


@dataclass(frozen=True)
class MetaEpochEnd:
    """A meta epoch ended: mean episode losses and validation top-1 per quality."""

    epoch: int
    epochs: int
    losses: MetaStepLosses
    val_top1: dict[int, float]
    mean_top1: float
    is_best: bool
    seconds: float


@dataclass(frozen=True)
class MetaResult:
    """best.pt / last.pt of the meta stage; `model` holds the last epoch's mixer (eval mode)."""

    best_path: Path
    last_path: Path
    best_epoch: int
    best_mean_top1: float
    history: tuple[MetaEpochEnd, ...]
    model: nn.Module = dataclasses.field(repr=False, compare=False)
