"""What `dctq quantize` is asked to do, and the one place its option rules live.

A quantization method (METHODS), then either the real images PTQ calibrates on (`PtqData`, with an optional
calibration cache), how the zero-shot methods get and use their synthetic images (`ZeroShotPlan`), or the
real data and options of quantization-aware training (`QatPlan`, methods qat and odm); and what is done
with the calibrated model's layers (`LayerPlan`: the sensitivity report and the fallback to float, on
held-out images `ValData`). `check_plan` and `check_layer_plan` hold the rules (which flags go with which
method: FLAG_METHODS) and word them with the CLI's flags: the CLI calls them with the flags it was given,
`quantize_checkpoint` with the flags its arguments stand for (`plan_flags`), so both refuse the same
combinations with the same message.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from ...common.errors import QuantizationError
from ..qat.config import QatConfig
from ..zeroshot.config import SynthConfig, ZeroShotConfig

METHODS = ("ptq", "intraq", "bnstats", "qat", "odm")
"""ptq: calibrate on real images; intraq / bnstats: zero-shot (synthetic images, KD fine-tuning);
qat / odm: quantization-aware training on real data (plain learnable-range QAT, or ODM)."""
ZERO_SHOT = ("intraq", "bnstats")
QAT = ("qat", "odm")

PTQ_FLAGS = ("--calib-split", "--num-images")
"""Flags only PTQ reads, besides --calib."""
SYNTH_FLAGS = {"num": "--num-synthetic", "iterations": "--synth-iters", "batch_size": "--synth-batch-size"}
"""SynthConfig field -> the `dctq quantize` flag that sets it."""
FINE_TUNE_FLAGS = {"epochs": "--epochs", "steps_per_epoch": "--steps-per-epoch", "milestones": "--milestones"}
"""ZeroShotConfig field -> the zero-shot-only `dctq quantize` flag that sets it (--batch-size, --seed and
--device are shared with PTQ)."""
ZERO_SHOT_FLAGS = ("--synthetic", "--calib-synthetic", *SYNTH_FLAGS.values(), *FINE_TUNE_FLAGS.values())
"""Flags only the zero-shot methods read (--epochs and --steps-per-epoch: QAT's too)."""
QAT_FLAGS = ("--data", "--lr", "--range-lr", "--range-gradient", "--resume")
ODM_FLAGS = (
    "--odm-version", "--variance-weight", "--cooperative", "--offsets", "--offset-fraction",
    "--mismatch-weight", "--weight-clip-correction",
)  # fmt: skip
FLAG_METHODS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(PTQ_FLAGS, ("ptq",)),
    **dict.fromkeys(ZERO_SHOT_FLAGS, ZERO_SHOT),
    "--epochs": ZERO_SHOT + QAT,
    "--steps-per-epoch": ZERO_SHOT + QAT,
    **dict.fromkeys(QAT_FLAGS, QAT),
    **dict.fromkeys(ODM_FLAGS, ("odm",)),
}
"""Each method-specific flag of `dctq quantize` and the methods that read it (the others refuse it)."""


@dataclass(frozen=True)
class PtqData:
    """The real images PTQ calibrates on (`--calib` and the options after it).

    `num_images` images drawn (seeded by `seed`) from `split` of `source` ("cifar10" or an ImageFolder of
    JPEGs): "train", the FP checkpoint's training split (its validation split stays unseen), or "all"
    (a separate calibration folder); read as stored, in batches of `batch_size`, by `workers` loader
    processes. Checked where it is read (workflow.data.calibration_loader).
    cache: a calibration cache file (`--calib-cache`, calibration/calib_cache.py): when it exists its
    statistics calibrate the recipe without a forward pass (`source` may then be None: the images it was
    collected on); otherwise the statistics of this calibration are written there.
    """

    source: str | Path | None
    split: str = "train"
    num_images: int = 512
    batch_size: int = 64
    workers: int = 0
    seed: int = 0
    cache: Path | None = None

    def __post_init__(self) -> None:
        if self.cache is not None:
            object.__setattr__(self, "cache", Path(self.cache))
        if self.source is None and (self.cache is None or not self.cache.is_file()):
            raise QuantizationError(
                "PTQ needs calibration images: give --calib DIR|cifar10, or an existing --calib-cache file"
                + (f" ({self.cache} does not exist yet)" if self.cache is not None else "")
            )


SENSITIVITY_METRICS = ("accuracy", "sqnr")
"""How layers are ranked: top-1 points on the held-out images, or SQNR of the logits against FP (dB)."""
VAL_FLAGS = ("--val-split", "--val-images", "--sensitivity-metric")
"""Flags that only mean something with --sensitivity or --max-drop."""


@dataclass(frozen=True)
class ValData:
    """Labelled held-out images the layer decisions are measured on (`--val` and the options after it).

    `num_images` images drawn (seeded by `seed`) from `split` of `source` ("cifar10" or an ImageFolder;
    None: the images PTQ calibrates on, from their validation split): "val", the FP checkpoint's validation
    split (unseen by training and by PTQ's default calibration split), or "all" (a separate folder); files
    as stored, in batches of `batch_size`.
    """

    source: str | Path | None
    split: str = "val"
    num_images: int = 1000
    batch_size: int = 250
    seed: int = 0


@dataclass(frozen=True)
class LayerPlan:
    """What is done with the calibrated model's layers before it is written.

    sensitivity: rank every quantized layer (one alone quantized, one alone in float) by `metric` and
        write the ranking as JSON and a bar-chart PNG beside the output (`--sensitivity`).
    max_drop: return layers to float, most sensitive first, until top-1 on `val` is at most this many
        points below FP (`--max-drop`); None: no fallback.
    val: the held-out images; None (or a ValData without source) takes the "val" split of PTQ's --calib
        images (quantize_checkpoint).
    """

    sensitivity: bool = False
    metric: str = "accuracy"
    max_drop: float | None = None
    val: ValData | None = None

    def __post_init__(self) -> None:
        if self.metric not in SENSITIVITY_METRICS:
            raise QuantizationError(
                f"--sensitivity-metric must be one of {', '.join(SENSITIVITY_METRICS)}, got {self.metric!r}"
            )
        if self.max_drop is not None and not self.max_drop >= 0:
            raise QuantizationError(f"--max-drop takes top-1 points >= 0, e.g. 0.5, got {self.max_drop}")

    @property
    def active(self) -> bool:
        return self.sensitivity or self.max_drop is not None


def check_layer_plan(
    method: str, plan: LayerPlan | None, calib: PtqData | None, given: Collection[str] = ()
) -> None:
    """The rules of --sensitivity / --max-drop / --val / --calib-cache: the held-out options need one of the
    first two; both need labelled held-out images: --val, or (ptq calibrating on its "train" split) the
    "val" split of --calib; --calib-cache belongs to ptq. given: the flags set (VAL_FLAGS, "--val",
    "--calib-cache").

    Raises QuantizationError naming the flags and the fix.
    """
    active = plan is not None and plan.active
    idle = [f for f in (*VAL_FLAGS, "--val") if f in given]
    if idle and not active:
        raise QuantizationError(f"{', '.join(idle)} only apply with --sensitivity or --max-drop")
    if "--calib-cache" in given and method != "ptq":
        raise QuantizationError(f"--calib-cache applies to --method ptq only, not to --method {method}")
    if not active or (plan.val is not None and plan.val.source is not None):  # type: ignore[union-attr]
        return
    if calib is not None and calib.source is None:
        return  # a calibration cache: control.val_for takes its images' validation split, or says why not
    if method != "ptq" or calib is None or calib.split != "train":
        raise QuantizationError(
            "--sensitivity and --max-drop measure accuracy on labelled held-out images: give --val DIR|cifar10"
            + (
                ""
                if method != "ptq"
                else " (only with --calib-split train is --calib's validation split used by default)"
            )
        )


@dataclass(frozen=True)
class ZeroShotPlan:
    """How the zero-shot methods (intraq, bnstats) get their synthetic images and use them.

    synthetic: a file of `dctq synthesize`. When it exists and `synth` is None it is reused as it is
        (it must come from the same model by the same method); otherwise the images are made with
        `synth` and written there (a finished file with the same options is reused, a partial one
        continued). None keeps them in memory.
    synth: the synthesis options; their method must be the quantize method. None: SynthConfig's
        defaults with `fine_tune`'s seed and device (or the `synthetic` file as it is).
    fine_tune: calibration and KD fine-tuning (0 epochs: calibrate only).
    calib_synthetic: a finished `dctq synthesize` file of the same model (any method) to calibrate the
        activation ranges on instead, as IntraQ's code does with BN-statistics generator images.
    """

    synthetic: Path | None = None
    synth: SynthConfig | None = None
    fine_tune: ZeroShotConfig = dataclasses.field(default_factory=ZeroShotConfig)
    calib_synthetic: Path | None = None

    def __post_init__(self) -> None:
        for name in ("synthetic", "calib_synthetic"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value))
        if self.synth is not None and not isinstance(self.synth, SynthConfig):
            raise QuantizationError(
                f"ZeroShotPlan.synth takes a SynthConfig, got {type(self.synth).__name__}"
            )
        if not isinstance(self.fine_tune, ZeroShotConfig):
            raise QuantizationError(
                f"ZeroShotPlan.fine_tune takes a ZeroShotConfig, got {type(self.fine_tune).__name__}"
            )


@dataclass(frozen=True)
class QatPlan:
    """Quantization-aware training (methods qat and odm): the real data it trains on and its options.

    data: "cifar10" or an ImageFolder of JPEGs (classifiers), "sr" or a folder of HR images (SR models);
    the FP run's own training split of it is used (its validation images stay unseen).
    config: QatConfig (its `method` must be the quantize method). resume: continue the run whose state
    was saved beside the output (`qat_state_path(out)`).
    """

    data: str | Path
    config: QatConfig = dataclasses.field(default_factory=QatConfig)
    resume: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.config, QatConfig):
            raise QuantizationError(f"QatPlan.config takes a QatConfig, got {type(self.config).__name__}")


def qat_state_path(out: Path | str) -> Path:
    """Where a QAT run writing `out` (q.pt) keeps its resume state: q.qat-state.pt beside it."""
    out = Path(out)
    return out.with_name(out.stem + ".qat-state.pt")


def _reject_foreign(method: str, given: Collection[str]) -> None:
    """Refuse the flags of `given` that `method` does not read, grouped by the methods that do."""
    foreign = [f for f in FLAG_METHODS if f in given and method not in FLAG_METHODS[f]]
    if foreign:
        owners = FLAG_METHODS[foreign[0]]
        flags = [f for f in foreign if FLAG_METHODS[f] == owners]
        verb = "applies" if len(flags) == 1 else "apply"
        raise QuantizationError(
            f"{', '.join(flags)} {verb} to --method {' / '.join(owners)} only, not to --method {method}"
        )


def check_plan(method: str, calib: object = None, given: Collection[str] = (), data: object = None) -> None:
    """The option rules of `dctq quantize`: `method` is one of METHODS; ptq needs real images (`calib`,
    None when not given); intraq and bnstats read no real image (no `calib`); qat and odm train on real
    data (`data`, from --data) and take no --calib. given: the other flags set, e.g. {"--epochs", "--seed"};
    each flag of FLAG_METHODS is refused by the methods that do not read it (flags that belong to every
    method are ignored).

    Raises QuantizationError naming the method or the flags at fault, and the fix.
    """
    if method not in METHODS:
        raise QuantizationError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    given = set(given) | ({"--data"} if data is not None else set())
    _reject_foreign(method, given)
    if method in QAT:
        if calib is not None:
            raise QuantizationError(
                f"--method {method} trains on the data of --data, not --calib; give --data {calib} instead"
            )
        if data is None:
            raise QuantizationError(
                f"--method {method} trains on real data: give --data (cifar10 or an ImageFolder of JPEGs for "
                "classifiers; sr or a folder of HR images for SR models)"
            )
        return
    if method == "ptq":
        if calib is None:
            raise QuantizationError(
                "--method ptq calibrates on real images: give --calib DIR (an ImageFolder of JPEGs) or "
                "--calib cifar10; for zero-shot quantization without data use --method intraq or bnstats"
            )
        return
    if calib is not None:
        raise QuantizationError(
            f"--method {method} is zero-shot: it reads no real image, so --calib {calib} cannot be used; "
            "drop --calib, or use --method ptq to calibrate on those images"
        )


def plan_flags(plan: ZeroShotPlan | None) -> set[str]:
    """The `dctq quantize` flags `plan` stands for, so that a plan given with --method ptq is refused as
    the CLI refuses those flags: --synthetic and --calib-synthetic when set, and the synthesis and
    fine-tuning flags whose fields differ from the defaults (every synthesis flag when `synth` is the
    default). An empty set for None or a plan that sets nothing.
    """
    if plan is None:
        return set()
    flags: set[str] = set()
    if plan.synthetic is not None:
        flags.add("--synthetic")
    if plan.calib_synthetic is not None:
        flags.add("--calib-synthetic")
    if plan.synth is not None:
        default = SynthConfig(method=plan.synth.method)
        changed = {
            f for name, f in SYNTH_FLAGS.items() if getattr(plan.synth, name) != getattr(default, name)
        }
        flags |= changed or set(SYNTH_FLAGS.values())
    # --epochs scales the milestones along (ZeroShotConfig.with_epochs): other milestones were given.
    tune, default_tune = plan.fine_tune, ZeroShotConfig()
    scaled = default_tune.with_epochs(tune.epochs)
    for name, flag in FINE_TUNE_FLAGS.items():
        if getattr(tune, name) != getattr(default_tune if name == "epochs" else scaled, name):
            flags.add(flag)
    return flags
