"""ZeroShotConfig (the options of zero-shot quantization, IntraQ's CIFAR settings by default) and the
progress events `zero_shot_quantize` emits; the method itself is in zeroshot.py.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ...common.errors import QuantizationError

ZERO_SHOT_VERSION = 1
INTRAQ_TRAIN_EPOCHS = 147
"""IntraQ trains epochs 4..150 (after 4 calibration epochs) and decays at epochs 20, 40, 60."""


@dataclass(frozen=True)
class ZeroShotConfig:
    """Options of `zero_shot_quantize` (defaults: IntraQ's CIFAR settings; `with_epochs` scales them down).

    epochs / steps_per_epoch: IntraQ 147 x 200 (0 epochs = calibrate only). batch_size: per process.
    tune_unfolded: with a folding recipe, fine-tune with BN unfolded (frozen statistics, trainable
    affine: IntraQ's student) and fold it into the quantized convs afterwards (`fold_quantized_bn`,
    the same function up to rounding), so the result still has the recipe's folded, exportable form.
    lr, milestones (epochs where lr is multiplied by gamma), momentum, nesterov, weight_decay: SGD.
    temperature, kd_alpha, ce_weight: the loss (zeroshot.py's docstring). augment, crop_scale,
    crop_ratio, flip_p, dct_pad_mcus: augmentation of stored samples. calib_images: images used to
    calibrate activation ranges (None = all). track_weight_ranges: recompute weight ranges after
    every step.
    seed, device ("auto"/"cpu"/"cuda"), log_every (steps between progress events).
    """

    epochs: int = INTRAQ_TRAIN_EPOCHS
    steps_per_epoch: int = 200
    batch_size: int = 256
    # IntraQ's 1e-4 assumes unfolded BN (tune_unfolded): with BN folded into the convs and the KD weight
    # alpha*T^2 = 8000, one step at 1e-4 moved folded weights ~10% and collapsed a CIFAR ResNet-20
    # student to chance; folded tuning needs ~1e-6 (docs/benchmarks.md, IntraQ section).
    lr: float = 1e-4
    tune_unfolded: bool = True
    milestones: tuple[int, ...] = (16, 36, 56)
    gamma: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    temperature: float = 20.0
    kd_alpha: float = 20.0
    ce_weight: float = 1.0
    augment: bool = True
    crop_scale: tuple[float, float] = (0.5, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    dct_pad_mcus: int = 1
    calib_images: int | None = None
    track_weight_ranges: bool = True
    seed: int = 0
    device: str = "auto"
    log_every: int = 20
    version: int = ZERO_SHOT_VERSION

    def __post_init__(self) -> None:
        def check(ok: bool, message: str) -> None:
            if not ok:
                raise QuantizationError(message)

        for name in ("epochs", "dct_pad_mcus"):
            value = getattr(self, name)
            check(
                isinstance(value, int) and value >= 0,
                f"ZeroShotConfig.{name} must be an integer >= 0, got {value!r}",
            )
        for name in ("steps_per_epoch", "batch_size", "log_every"):
            value = getattr(self, name)
            check(
                isinstance(value, int) and value >= 1,
                f"ZeroShotConfig.{name} must be an integer >= 1, got {value!r}",
            )
        check(
            self.lr > 0 and 0 < self.gamma <= 1,
            f"need lr > 0 and 0 < gamma <= 1, got {self.lr}, {self.gamma}",
        )
        check(self.momentum >= 0 and self.weight_decay >= 0, "momentum and weight_decay must be >= 0")
        check(not self.nesterov or self.momentum > 0, "Nesterov momentum needs momentum > 0")
        check(
            self.temperature > 0 and self.kd_alpha >= 0 and self.ce_weight >= 0,
            "need temperature > 0, weights >= 0",
        )
        check(0 <= self.flip_p <= 1, f"flip_p must be in [0, 1], got {self.flip_p}")
        check(self.calib_images is None or self.calib_images >= 1, "calib_images must be None or >= 1")
        check(
            self.device in ("auto", "cpu", "cuda"), f"device must be auto, cpu or cuda, got {self.device!r}"
        )
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))
        check(
            all(m >= 1 for m in self.milestones),
            f"milestones are epochs >= 1 where the rate drops, got {self.milestones}",
        )
        object.__setattr__(self, "crop_scale", tuple(float(v) for v in self.crop_scale))
        object.__setattr__(self, "crop_ratio", tuple(float(v) for v in self.crop_ratio))
        check(self.version == ZERO_SHOT_VERSION, f"ZeroShotConfig version {self.version!r} is not supported")

    def with_epochs(self, epochs: int) -> ZeroShotConfig:
        """The same schedule squeezed into `epochs` epochs (milestones scaled proportionally)."""
        if self.epochs == 0:
            return dataclasses.replace(self, epochs=epochs)
        scaled = tuple(max(1, round(m * epochs / self.epochs)) for m in self.milestones)
        return dataclasses.replace(self, epochs=epochs, milestones=scaled)

    def lr_at(self, epoch: int) -> float:
        """Learning rate of epoch `epoch` (0-based)."""
        return self.lr * self.gamma ** sum(epoch >= m for m in self.milestones)

    def to_dict(self) -> dict[str, Any]:
        return {
            f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
            for f in dataclasses.fields(self)
        }


@dataclass(frozen=True)
class ZeroShotStep:
    """Every `log_every` steps (rank 0's shard): means since the last event."""

    epoch: int
    step: int
    steps: int
    loss: float
    kd: float
    ce: float
    agreement: float
    lr: float


@dataclass(frozen=True)
class ZeroShotEpochEnd:
    """An epoch ended (epoch counts from 1); means over rank 0's steps. agreement: student top-1 == teacher's."""

    epoch: int
    epochs: int
    loss: float
    kd: float
    ce: float
    agreement: float
    lr: float
    seconds: float


ZeroShotEvent = ZeroShotStep | ZeroShotEpochEnd
