"""MetaConfig: the options of QSAM's meta stage (meta.py), saved in its checkpoints as extra["meta_config"]."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor

from ...common.config import DEVICES, Config, check
from ...jpeg.recompress import QSAM_META_TEST_QUALITIES
from ...models.qabn import QSAM_BASE_QUALITIES
from .episode import plain_ce
from .qac import qac_batch_loss, qac_weighted_loss

QAC_SCALES = ("batch", "sample")


@dataclass(frozen=True)
class MetaConfig(Config):
    """QSAM's meta stage: learn the QABN mixing MLP alone, backbone and BN branches frozen.

    Saved as {"type", "version", "fields"} (common.config), version 2 (version 1 had no `qac_scale` and
    trained with the per-sample scale); bad values raise ConfigError.
    """

    VERSION = 2
    READS = (1, 2)

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

    qac_scale: str = "batch"
    """How the c(Q)-weighted episode losses are scaled: "batch" = QSAM's code (`qac(inputs) * CE`: c(Q)
    summed over the batch times the batch-mean CE, B times the per-sample form; qac.qac_batch_loss), or
    "sample" = the per-sample mean (qac.qac_weighted_loss), under which the L1 pull to one-hot weights
    dominates and the inner step barely moves the mixer."""

    base_qualities: tuple[int, ...] = QSAM_BASE_QUALITIES
    held_out_qualities: tuple[int, ...] = QSAM_META_TEST_QUALITIES
    eval_qualities: tuple[int, ...] = (90, 70, 50, 30, 10)
    """Validation qualities; the best epoch has the best mean top-1 over them (QSAM: 18 anchors)."""

    seed: int = 0
    num_workers: int = 0
    device: str = "auto"

    RESUMABLE: ClassVar[tuple[str, ...]] = ("num_workers", "device")
    """What a resumed meta stage may change (`epochs` shapes the rate schedule, so it may not)."""

    def __post_init__(self) -> None:
        flags = {"epochs": "--epochs", "batch_size": "--batch-size", "held_out_qualities": "--held-out"}
        flags |= {"eval_qualities": "--eval-qualities", "base_qualities": "the base_qualities setting"}
        for name in ("epochs", "batch_size"):
            check(getattr(self, name) >= 1, f"{flags[name]} must be >= 1, got {getattr(self, name)}")
        check(
            self.steps_per_epoch is None or self.steps_per_epoch >= 1,
            f"--steps must be >= 1, got {self.steps_per_epoch}",
        )
        check(self.lr > 0, f"--lr must be > 0, got {self.lr}")
        check(self.constant_epochs >= 0, f"--constant-epochs must be >= 0, got {self.constant_epochs}")
        check(
            0 < self.final_factor <= 1, f"the final_factor setting must be in (0, 1], got {self.final_factor}"
        )
        for name in ("base_qualities", "held_out_qualities", "eval_qualities"):
            object.__setattr__(self, name, tuple(int(q) for q in getattr(self, name)))
            qualities = getattr(self, name)
            check(
                bool(qualities) and all(1 <= q <= 100 for q in qualities),
                f"{flags[name]} must be JPEG qualities in 1..100, got {qualities}",
            )
        check(self.device in DEVICES, f"--device must be one of {DEVICES}, got {self.device!r}")
        check(
            self.qac_scale in QAC_SCALES,
            f"--qac-scale must be one of {', '.join(QAC_SCALES)}, got {self.qac_scale!r}",
        )

    @classmethod
    def upgrade(cls, fields: dict[str, Any], version: int) -> dict[str, Any]:
        """Version 1 meta stages weighted their losses per sample."""
        return {"qac_scale": "sample", **fields} if version == 1 else fields

    def episode_loss(self) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
        """(logits, labels, qt) -> the scalar loss of one episode batch, as `qac` and `qac_scale` say."""
        if not self.qac:
            return plain_ce
        return qac_batch_loss if self.qac_scale == "batch" else qac_weighted_loss

    def lr_factor(self, epoch: int) -> float:
        """QSAM's schedule: 1 up to `constant_epochs`, then exponential down to `final_factor` at the end."""
        decay = self.epochs - (self.constant_epochs + 1)
        if epoch < self.constant_epochs or decay <= 0:
            return 1.0
        return self.final_factor ** ((epoch - self.constant_epochs) / decay)
