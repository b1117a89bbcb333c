"""TrainConfig: every option of a training run, validated on construction and saved with the weights.

Holds registry names and plain values only (never classes), so `to_dict()` goes into the checkpoint's
`extra["train_config"]` and `torch.load(weights_only=True)` still reads it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...common.config import DEVICES, Config, check
from ...jpeg.splits import AUGMENTS
from ...models.registry import get_model_info

SCHEDULES = ("cosine", "multistep", "constant")
OPTIMIZERS = ("sgd", "adam")

TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "classify": {},
    "autoencode": {},
    "sr": {
        "optimizer": "adam",
        "lr": 4e-4,
        "weight_decay": 0.0,
        "nesterov": False,
        "batch_size": 16,
        "epochs": 30,
        "samples_per_epoch": 8000,
        "val_fraction": 0.05,
    },
}
"""Defaults that differ by the architecture's task (models.registry ModelInfo.task). The one place that
combines defaults is `TrainConfig.for_arch` (and `config_for`, which looks the task up): TrainConfig's
field defaults, under TASK_DEFAULTS[task], under the architecture's registered `train_defaults`
(ModelInfo.train_defaults: the DQ autoencoders' Adam 2e-4, constant rate, clip 2), under the options a
user gives. SR follows EDSR (Adam, L1 loss, batch 16, no weight decay) with a
shorter, cosine schedule at a higher rate for CPU-scale runs (EDSR: lr 1e-4 halved every 200k steps)."""
SR_ONLY = ("patch_size", "samples_per_epoch", "skip_small_images")
CLASSIFY_ONLY = (
    "label_smoothing",
    "train_qualities",
    "eval_quality",
    "qac",
    "qac_normalize",
    "qabn",
    "versions",
    "stem_stats_batches",
)


@dataclass(frozen=True)
class TrainConfig(Config):
    """Options of `dctq train` / `calibration.train.loop.train`; saved as {"type", "version", "fields"}
    (common.config), version 1. Invalid values raise ConfigError naming the CLI flag."""

    # A resumed run may change how long and where it runs: a new --epochs reshapes the cosine schedule and
    # a new --workers changes the augmentation draws, both still the same recipe.
    RESUMABLE = ("epochs", "num_workers", "log_every", "device")
    SPARSE = (
        "optimizer",
        "samples_per_epoch",
        "patch_size",
        "skip_small_images",
        "clip_grad_norm",
    )  # added with SR, DQ training

    arch: str
    """Registry name of the architecture (`dctq models list`)."""

    arch_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Extra builder arguments of the architecture (`--arch-kwargs '{"widths": [16, 32]}'`), plain JSON
    values; `num_classes` is not one of them, it comes from the data set's classes."""

    epochs: int = 30
    """Number of passes over the training set (`--epochs`)."""

    batch_size: int = 128
    """Images per step per process (`--batch-size`). With `qabn` and no `train_qualities` this is per base
    quality, so a step holds `len(QSAM_BASE_QUALITIES) * batch_size` images, as in QSAM (128 per QF, 512 per step)."""

    optimizer: str = "sgd"
    """"sgd" (with --momentum, --nesterov) or "adam" (beta1 = --momentum, beta2 0.999) (`--optimizer`)."""

    lr: float = 0.1
    """Peak learning rate (`--lr`), reached after the warm-up."""

    momentum: float = 0.9
    """SGD momentum (`--momentum`)."""

    weight_decay: float = 5e-4
    """L2 weight decay (`--weight-decay`; Adam adds it to the gradient, as torch.optim.Adam does)."""

    clip_grad_norm: float | None = None
    """Clip the gradients' global L2 norm to this value before each step (`--clip-grad-norm`); None: no clipping."""

    nesterov: bool = True
    """Nesterov momentum (`--nesterov/--no-nesterov`); needs momentum > 0."""

    schedule: str = "cosine"
    """Learning-rate schedule after the warm-up: "cosine" (to 0 at the last step), "multistep" or "constant"
    (`--schedule`)."""

    milestones: tuple[int, ...] = ()
    """Epochs at which "multistep" multiplies the rate by `gamma` (`--milestones 60,120,160`)."""

    gamma: float = 0.2
    """Factor applied at each milestone of "multistep" (`--gamma`)."""

    warmup_epochs: float = 0.0
    """Linear warm-up from lr/steps to lr over this many epochs, counted in steps (`--warmup-epochs`)."""

    label_smoothing: float = 0.0
    """Label smoothing of the cross-entropy, in [0, 1) (`--label-smoothing`)."""

    seed: int = 0
    """Seed of weights, data order and augmentation (`--seed`); every epoch reseeds from (seed, epoch),
    so a resumed run repeats the straight run exactly on CPU."""

    amp: bool = False
    """Mixed precision (float16 autocast + gradient scaling) on CUDA (`--amp`); ignored on CPU."""

    train_qualities: tuple[int, ...] | None = None
    """JPEG qualities training images are re-compressed to, one drawn per image (`--qualities 90,60,30,10`);
    None trains on the files as stored."""

    eval_quality: int | None = None
    """JPEG quality validation images are re-compressed to (`--eval-quality`); None uses the files as stored."""

    qac: bool = False
    """Weight each image's loss by QSAM's quantization-aware confidence c(Q) of its quant tables (`--qac`)."""

    qac_normalize: bool = False
    """Divide the QAC weights by their batch mean (`--qac-normalize`): keeps QAC's relative weighting of
    qualities without shrinking the effective learning rate ~20x (the reference code does not)."""

    qabn: bool = False
    """QSAM base stage (`--qabn`): one BatchNorm branch per base quality (90, 60, 30, 10). Without
    `train_qualities` each training image is seen at all four qualities with the same crop/flip, each version
    normalised by its own branch (QSAM's protocol, 4x the compute per epoch). With `train_qualities` each image
    is seen once per epoch at one random quality and routed to the branch of the base quality nearest to its
    tables (the same compute and data as plain training on that mix)."""

    versions: bool = False
    """QSAM's base-stage data protocol without QABN (`--versions`): every training image at all four base
    qualities per step with the same crop/flip, normalised by ordinary BatchNorm; 4x the compute per epoch.
    `qabn` without `train_qualities` implies it. The control that isolates QABN in QSAM's own protocol."""

    augment: str = "default"
    """Training augmentation (`--augment`): "default" = the dataset's (random flip + one-MCU pad and
    random crop for DCT models, flip + reflect-pad-4 crop for RGB ones), "flip" = random flip only,
    "crop" = flip + reflect-pad-4 crop in pixels for every model (DCT files are decoded and re-encoded
    with their own quant tables), "none". On 32x32 images the DCT default crop shifts by 16 px, so
    most padded blocks are blank; "crop" is the CIFAR recipe's choice for DCT models. For photographs (224 px):
    "rrc" = RandomResizedCrop + flip (DCT models in the DCT domain: jpeg.transforms.DctResizedCrop, no
    decode; RGB models in pixels), "rrc-pixels" = the exact crop in pixels for DCT models too (decoded and
    re-encoded with the file's tables)."""

    num_workers: int = 0
    """Data-loader worker processes per training process (`--workers`)."""

    val_fraction: float = 0.1
    """Fraction of the data split off (seeded) as the validation set (`--val-fraction`)."""

    max_steps_per_epoch: int | None = None
    """Cut every epoch after this many steps, for smoke tests and quick runs (`--max-steps`)."""

    log_every: int = 10
    """Emit a step event (loss, accuracy, images/s) every this many steps (`--log-every`)."""

    stem_stats_batches: int = 16
    """Training batches the DCT stem's per-frequency statistics are measured on (`--stem-batches`)."""

    device: str = "auto"
    """"auto" (CUDA when present), "cpu" or "cuda" (`--device`); under torchrun each process takes
    cuda:LOCAL_RANK."""

    samples_per_epoch: int | None = None
    """Training samples per epoch (`--samples-per-epoch`): None = one pass over the training set
    (classifiers); SR models draw this many random patches per epoch (their default 8000: 500 steps of 16)."""

    patch_size: int = 96
    """SR only: side of the random HR training patches in pixels, a multiple of the scale (`--patch-size`;
    96 at x4 = 24x24 LR patches, EDSR uses 192)."""

    skip_small_images: bool = False
    """SR only: leave out training images smaller than the patch (logged) instead of refusing them
    (`--skip-small-images`; the shared Yang91 set holds one 78x78 image, t20.bmp)."""

    def __post_init__(self) -> None:
        # Frozen: normalise list inputs to tuples through object.__setattr__.
        if self.train_qualities is not None:
            object.__setattr__(self, "train_qualities", tuple(int(q) for q in self.train_qualities))
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))
        check(bool(self.arch), "ARCH must name an architecture (see `dctq models list`).")
        check(
            isinstance(self.arch_kwargs, dict) and all(isinstance(k, str) for k in self.arch_kwargs),
            f"--arch-kwargs must be a JSON object with string keys, got {self.arch_kwargs!r}.",
        )
        check(
            "num_classes" not in self.arch_kwargs,
            "--arch-kwargs must not set num_classes: it comes from the data set's class folders.",
        )
        check(self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}.")
        check(self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}.")
        check(
            self.optimizer in OPTIMIZERS, f"--optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}."
        )
        check(self.lr > 0, f"--lr must be > 0, got {self.lr}.")
        check(
            self.clip_grad_norm is None or self.clip_grad_norm > 0,
            f"--clip-grad-norm must be > 0, got {self.clip_grad_norm}.",
        )
        check(0 <= self.momentum < 1, f"--momentum must be in [0, 1), got {self.momentum}.")
        check(self.weight_decay >= 0, f"--weight-decay must be >= 0, got {self.weight_decay}.")
        check(
            not (self.nesterov and self.momentum == 0 and self.optimizer == "sgd"),
            "--nesterov needs --momentum > 0; pass --no-nesterov or a momentum.",
        )
        check(self.schedule in SCHEDULES, f"--schedule must be one of {SCHEDULES}, got {self.schedule!r}.")
        check(
            all(0 < m <= self.epochs for m in self.milestones),
            f"--milestones must lie in 1..--epochs ({self.epochs}), got {list(self.milestones)}.",
        )
        check(
            list(self.milestones) == sorted(set(self.milestones)),
            f"--milestones must be increasing without repeats, got {list(self.milestones)}.",
        )
        check(
            not (self.milestones and self.schedule != "multistep"),
            "--milestones only applies to --schedule multistep.",
        )
        check(0 < self.gamma <= 1, f"--gamma must be in (0, 1], got {self.gamma}.")
        check(
            0 <= self.warmup_epochs < self.epochs,
            f"--warmup-epochs must be in [0, --epochs), got {self.warmup_epochs}.",
        )
        check(
            0 <= self.label_smoothing < 1,
            f"--label-smoothing must be in [0, 1), got {self.label_smoothing}.",
        )
        for q in self.train_qualities or ():
            check(1 <= q <= 100, f"--qualities must be JPEG qualities in 1..100, got {q}.")
        check(
            self.train_qualities is None or len(self.train_qualities) > 0,
            "--qualities must list at least one quality, e.g. 90,60,30,10.",
        )
        check(
            self.eval_quality is None or 1 <= self.eval_quality <= 100,
            f"--eval-quality must be in 1..100, got {self.eval_quality}.",
        )
        check(not (self.qac_normalize and not self.qac), "--qac-normalize needs --qac.")
        check(
            not (self.versions and self.train_qualities is not None),
            "--versions trains on all four base qualities 90,60,30,10; drop --qualities (or --versions).",
        )
        check(self.augment in AUGMENTS, f"--augment must be one of {AUGMENTS}, got {self.augment!r}.")
        check(self.num_workers >= 0, f"--workers must be >= 0, got {self.num_workers}.")
        check(0 < self.val_fraction < 1, f"--val-fraction must be in (0, 1), got {self.val_fraction}.")
        check(
            self.max_steps_per_epoch is None or self.max_steps_per_epoch >= 1,
            f"--max-steps must be >= 1, got {self.max_steps_per_epoch}.",
        )
        check(self.log_every >= 1, f"--log-every must be >= 1, got {self.log_every}.")
        check(self.stem_stats_batches >= 1, f"--stem-batches must be >= 1, got {self.stem_stats_batches}.")
        check(self.device in DEVICES, f"--device must be one of {DEVICES}, got {self.device!r}.")
        check(
            not (self.optimizer == "adam" and self.nesterov),
            "--optimizer adam has no Nesterov momentum; pass --no-nesterov.",
        )
        check(
            self.samples_per_epoch is None or self.samples_per_epoch >= 1,
            f"--samples-per-epoch must be >= 1, got {self.samples_per_epoch}.",
        )
        check(self.patch_size >= 1, f"--patch-size must be >= 1, got {self.patch_size}.")

    @classmethod
    def for_arch(cls, arch: str, task: str, **options: Any) -> TrainConfig:
        """The config of `arch` (whose registry task is `task`): TASK_DEFAULTS[task] under the model's
        `train_defaults` under `options` (the ones given), validated. Options that do not apply to the task raise ConfigError naming them.
        """
        check(task in TASK_DEFAULTS, f"training does not know the task {task!r} of {arch!r}.")
        # the autoencoders refuse the classifier options themselves (tasks.AutoencodeTask.check)
        wrong = {"classify": SR_ONLY, "sr": CLASSIFY_ONLY, "autoencode": SR_ONLY}.get(
            task, CLASSIFY_ONLY + SR_ONLY
        )
        bad = [name for name in wrong if name in options and options[name] != _field_default(name)]
        check(
            not bad,
            f"{', '.join('--' + b.replace('_', '-') for b in bad)} do(es) not apply to {arch} (a {task} model).",
        )
        model_defaults = dict(get_model_info(arch).train_defaults)
        return cls(arch=arch, **{**TASK_DEFAULTS[task], **model_defaults, **options})

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with `changes` applied (validated again)."""
        return dataclasses.replace(self, **changes)


def config_for(arch: str, **options: Any) -> TrainConfig:
    """The TrainConfig of a run of `arch`: `options` (TrainConfig fields; None values count as not given)
    over the architecture's registered `train_defaults` (models.registry) over its task's TASK_DEFAULTS
    over TrainConfig's defaults (`TrainConfig.for_arch`).

    Raises ConfigError for invalid values, ModelError for an unknown architecture.
    """
    given = {k: v for k, v in options.items() if v is not None}
    return TrainConfig.for_arch(arch, get_model_info(arch).task, **given)


def saved_train_config(extra: Mapping[str, Any]) -> TrainConfig | None:
    """The TrainConfig a checkpoint's `extra` records (written by `dctq train`), None when it has none.

    Raises ConfigError for a saved config this dctq cannot read (another type, a newer version).
    """
    saved = extra.get("train_config")
    return TrainConfig.from_dict(saved) if saved else None


def saved_val_fraction(extra: Mapping[str, Any]) -> float:
    """The validation fraction the run of a checkpoint split its data with (its saved TrainConfig), or
    TrainConfig's default for a checkpoint that records none: what `--split val` must use to give back
    that run's validation images."""
    config = saved_train_config(extra)
    return config.val_fraction if config is not None else _DEFAULT_VAL_FRACTION


def _field_default(name: str) -> Any:
    field = next(f for f in dataclasses.fields(TrainConfig) if f.name == name)
    return field.default_factory() if field.default is dataclasses.MISSING else field.default  # type: ignore[misc]


_DEFAULT_VAL_FRACTION = _field_default("val_fraction")
