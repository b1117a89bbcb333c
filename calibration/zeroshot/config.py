"""The options of zero-shot quantization and the progress events it emits: SynthConfig for synthesis
(`synthesize`, IntraQ's generator), ZeroShotConfig for the KD fine-tuning that follows
(`zero_shot_quantize`, distill.py).

Both use common.config's flat layout, {"type", <fields>, "version": 1}: synthetic files (`config`),
`dctq synthesize --json` and the `quantization` record of quantized checkpoints (`dctq quantize --json`)
publish them by field name. Dicts written before the "type" key was added (version 1) still load.
Bad values raise QuantizationConfigError (a ConfigError and a QuantizationError).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ...common.config import DEVICES, Config, check
from ...common.errors import QuantizationConfigError
from ...jpeg.transforms import CROP_RATIO, CROP_SCALE
from .images import DCT_SPACES

METHODS = ("intraq", "bnstats")
INTRAQ_TRAIN_EPOCHS = 147
"""IntraQ trains epochs 4..150 (after 4 calibration epochs) and decays at epochs 20, 40, 60."""

# The options that set these fields, for the messages: `dctq synthesize`'s, and `dctq quantize`'s where
# it names them differently.
_SYNTH_FLAGS = {
    "num": "--num (quantize: --num-synthetic)",
    "iterations": "--iters (quantize: --synth-iters)",
    "batch_size": "--batch-size (quantize: --synth-batch-size)",
    "centre_every": "--centre-every",
    "log_every": "the log_every setting",
}
_TUNE_FLAGS = {
    "epochs": "--epochs",
    "steps_per_epoch": "--steps-per-epoch",
    "batch_size": "--batch-size",
    "dct_pad_mcus": "the dct_pad_mcus setting",
    "log_every": "the log_every setting",
}


def _check(ok: bool, message: str) -> None:
    check(ok, message, QuantizationConfigError)


class _ZeroShotOptions(Config):
    """common.config settings shared by SynthConfig and ZeroShotConfig."""

    VERSION = 1
    READS = (1,)
    FLAT = True
    UNTYPED = (1,)  # written without "type" before common.config
    error = QuantizationConfigError


@dataclass(frozen=True)
class SynthConfig(_ZeroShotOptions):
    """Options of `synthesize` / `dctq synthesize` (defaults: IntraQ's CIFAR-10 settings).

    A synthetic file is continued or reused only by a run whose options differ in RESUMABLE alone
    (device, log_every: they do not change what is computed).

    num / batch_size / iterations: images, images per batch, Adam steps per batch (`--num`,
        `--batch-size`, `--iters`). IntraQ: 5120 = 20 x 256, 1000 steps; 0 steps keeps the N(0, 1) start.
    method: "intraq" or "bnstats" (`--method`); lor / sil / mdc: None takes the method's choice
        (all on for intraq, all off for bnstats); sil False uses cross-entropy instead.
    lr, plateau_patience, plateau_factor, min_lr: Adam and ReduceLROnPlateau on the total loss.
    lor_prob, crop_scale, crop_ratio: LOR's per-step probability and RandomResizedCrop ranges.
    sil_eps: IntraQ's targetPro (0.95 CIFAR-10, 0.6 CIFAR-100, 1.0 ImageNet = hard targets).
    mdc_lo / mdc_up: the cosine-distance band (0.05 / 0.8 CIFAR-10; ImageNet used 0 / 2, i.e. off).
    centre_every: MDC centres refresh every this many batches (1 = IntraQ; rounded up to a multiple
        of the number of processes under torchrun).
    qualities: (low, high) IJG qualities drawn uniformly per image; DCT models see its quant tables.
    dct_space: what DCT models' synthesis optimises (synth_params): "stem" (coefficients in the
        stem-normalised space, default) or "pixels" (normalised RGB pixels, as for RGB models).
    seed: same seed, same samples. device: "auto", "cpu" or "cuda". log_every: steps between events.
    """

    RESUMABLE = ("device", "log_every")

    num: int = 5120
    batch_size: int = 256
    iterations: int = 1000
    method: str = "intraq"
    lor: bool | None = None
    sil: bool | None = None
    mdc: bool | None = None
    lr: float = 0.5
    plateau_patience: int = 50
    plateau_factor: float = 0.1
    min_lr: float = 1e-4
    lor_prob: float = 0.5
    crop_scale: tuple[float, float] = CROP_SCALE
    crop_ratio: tuple[float, float] = CROP_RATIO
    sil_eps: float = 0.95
    mdc_lo: float = 0.05
    mdc_up: float = 0.8
    centre_every: int = 1
    qualities: tuple[int, int] = (50, 95)
    dct_space: str = "stem"
    seed: int = 0
    device: str = "auto"
    log_every: int = 10

    def __post_init__(self) -> None:
        _check(self.method in METHODS, f"--method must be one of {', '.join(METHODS)}, got {self.method!r}")
        default = self.method == "intraq"
        for name in ("lor", "sil", "mdc"):
            value = getattr(self, name)
            if value is None:
                object.__setattr__(self, name, default)
            else:
                _check(
                    isinstance(value, bool), f"the {name} setting must be true, false or None, got {value!r}"
                )
        _check(
            isinstance(self.iterations, int)
            and not isinstance(self.iterations, bool)
            and self.iterations >= 0,
            f"{_SYNTH_FLAGS['iterations']} must be an integer >= 0 (0 keeps the random initial images), "
            f"got {self.iterations!r}",
        )
        for name in ("num", "batch_size", "centre_every", "log_every"):
            value = getattr(self, name)
            _check(
                isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                f"{_SYNTH_FLAGS.get(name, '--' + name.replace('_', '-'))} must be a positive integer, got {value!r}",
            )
        _check(self.lr > 0, f"--lr (of synthesize) must be > 0, got {self.lr}")
        _check(0 < self.plateau_factor < 1, f"plateau_factor must be in (0, 1), got {self.plateau_factor}")
        _check(self.plateau_patience >= 0 and self.min_lr >= 0, "plateau_patience and min_lr must be >= 0")
        _check(0 <= self.lor_prob <= 1, f"lor_prob must be in [0, 1], got {self.lor_prob}")
        scale, ratio = tuple(self.crop_scale), tuple(self.crop_ratio)
        _check(
            len(scale) == 2 and 0 < scale[0] <= scale[1] <= 1,
            f"crop_scale must be 0 < a <= b <= 1, got {scale}",
        )
        _check(len(ratio) == 2 and 0 < ratio[0] <= ratio[1], f"crop_ratio must be 0 < a <= b, got {ratio}")
        object.__setattr__(self, "crop_scale", (float(scale[0]), float(scale[1])))
        object.__setattr__(self, "crop_ratio", (float(ratio[0]), float(ratio[1])))
        _check(0 <= self.sil_eps <= 1, f"--sil-eps must be in [0, 1], got {self.sil_eps}")
        _check(
            0 <= self.mdc_lo <= self.mdc_up, f"need 0 <= mdc_lo <= mdc_up, got {self.mdc_lo}, {self.mdc_up}"
        )
        q = tuple(self.qualities)
        _check(
            len(q) == 2 and all(isinstance(v, int) for v in q) and 1 <= q[0] <= q[1] <= 100,
            f"--qualities must be two IJG qualities 1 <= low <= high <= 100, got {self.qualities!r}",
        )
        object.__setattr__(self, "qualities", (int(q[0]), int(q[1])))
        _check(self.dct_space in DCT_SPACES, f"dct_space must be one of {DCT_SPACES}, got {self.dct_space!r}")
        _check(self.device in DEVICES, f"--device must be auto, cpu or cuda, got {self.device!r}")

    @property
    def num_batches(self) -> int:
        return math.ceil(self.num / self.batch_size)


@dataclass(frozen=True)
class ZeroShotConfig(_ZeroShotOptions):
    """Options of `zero_shot_quantize` (defaults: IntraQ's CIFAR settings; `with_epochs` scales them down).

    epochs / steps_per_epoch: IntraQ 147 x 200 (0 epochs = calibrate only). batch_size: per process.
    tune_unfolded: with a folding recipe, fine-tune with BN unfolded (frozen statistics, trainable
    affine: IntraQ's student) and fold it into the quantized convs afterwards (`fold_quantized_bn`,
    the same function up to rounding), so the result still has the recipe's folded, exportable form.
    lr, milestones (epochs where lr is multiplied by gamma), momentum, nesterov, weight_decay: SGD.
    temperature, kd_alpha, ce_weight: the loss (distill.py's docstring). augment, crop_scale,
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
    crop_scale: tuple[float, float] = CROP_SCALE
    crop_ratio: tuple[float, float] = CROP_RATIO
    flip_p: float = 0.5
    dct_pad_mcus: int = 1
    calib_images: int | None = None
    track_weight_ranges: bool = True
    seed: int = 0
    device: str = "auto"
    log_every: int = 20

    def __post_init__(self) -> None:
        for name in ("epochs", "dct_pad_mcus"):
            value = getattr(self, name)
            _check(
                isinstance(value, int) and value >= 0,
                f"{_TUNE_FLAGS.get(name, name)} must be an integer >= 0, got {value!r}",
            )
        for name in ("steps_per_epoch", "batch_size", "log_every"):
            value = getattr(self, name)
            _check(
                isinstance(value, int) and value >= 1,
                f"{_TUNE_FLAGS.get(name, name)} must be an integer >= 1, got {value!r}",
            )
        _check(
            self.lr > 0 and 0 < self.gamma <= 1,
            f"need lr > 0 and 0 < gamma <= 1, got {self.lr}, {self.gamma}",
        )
        _check(self.momentum >= 0 and self.weight_decay >= 0, "momentum and weight_decay must be >= 0")
        _check(not self.nesterov or self.momentum > 0, "Nesterov momentum needs momentum > 0")
        _check(
            self.temperature > 0 and self.kd_alpha >= 0 and self.ce_weight >= 0,
            "need temperature > 0, weights >= 0",
        )
        _check(0 <= self.flip_p <= 1, f"flip_p must be in [0, 1], got {self.flip_p}")
        _check(self.calib_images is None or self.calib_images >= 1, "calib_images must be None or >= 1")
        _check(self.device in DEVICES, f"device must be auto, cpu or cuda, got {self.device!r}")
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))
        _check(
            all(m >= 1 for m in self.milestones),
            f"milestones are epochs >= 1 where the rate drops, got {self.milestones}",
        )
        object.__setattr__(self, "crop_scale", tuple(float(v) for v in self.crop_scale))
        object.__setattr__(self, "crop_ratio", tuple(float(v) for v in self.crop_ratio))

    def with_epochs(self, epochs: int) -> ZeroShotConfig:
        """The same schedule squeezed into `epochs` epochs (milestones scaled proportionally)."""
        if self.epochs == 0:
            return dataclasses.replace(self, epochs=epochs)
        scaled = tuple(max(1, round(m * epochs / self.epochs)) for m in self.milestones)
        return dataclasses.replace(self, epochs=epochs, milestones=scaled)

    def lr_at(self, epoch: int) -> float:
        """Learning rate of epoch `epoch` (0-based)."""
        return self.lr * self.gamma ** sum(epoch >= m for m in self.milestones)


# ------------------------------------------------------------------------------------- events


@dataclass(frozen=True)
class SynthStep:
    """Every `log_every` Adam steps of a batch this process is making (rank 0 only)."""

    batch: int
    iteration: int
    iterations: int
    loss: float
    bns: float
    label: float
    mdc: float
    lr: float
    lor: bool = False
    """Whether this step's images were LOR crops (their L_BNS is typically higher)."""


@dataclass(frozen=True)
class SynthBatchEnd:
    """A batch is finished and (when writing a file) saved; `done` batches of `batches` exist."""

    batch: int
    done: int
    batches: int
    loss: float
    bns: float
    seconds: float


SynthEvent = SynthStep | SynthBatchEnd


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
