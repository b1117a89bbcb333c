"""SynthConfig (the options of zero-shot synthesis) and the progress events `synthesize` emits."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ...common.errors import QuantizationError
from .images import DCT_SPACES

METHODS = ("intraq", "bnstats")
SYNTH_CONFIG_VERSION = 1
# Options that may differ between a run and its resumption without changing what is computed.
RESUMABLE_CHANGES = ("device", "log_every")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise QuantizationError(message)


@dataclass(frozen=True)
class SynthConfig:
    """Options of `synthesize` / `dctq synthesize` (defaults: IntraQ's CIFAR-10 settings).

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
    crop_scale: tuple[float, float] = (0.5, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    sil_eps: float = 0.95
    mdc_lo: float = 0.05
    mdc_up: float = 0.8
    centre_every: int = 1
    qualities: tuple[int, int] = (50, 95)
    dct_space: str = "stem"
    seed: int = 0
    device: str = "auto"
    log_every: int = 10
    version: int = SYNTH_CONFIG_VERSION

    def __post_init__(self) -> None:
        _check(self.method in METHODS, f"--method must be one of {', '.join(METHODS)}, got {self.method!r}")
        default = self.method == "intraq"
        for name in ("lor", "sil", "mdc"):
            value = getattr(self, name)
            if value is None:
                object.__setattr__(self, name, default)
            else:
                _check(
                    isinstance(value, bool), f"SynthConfig.{name} must be true, false or None, got {value!r}"
                )
        _check(
            isinstance(self.iterations, int)
            and not isinstance(self.iterations, bool)
            and self.iterations >= 0,
            f"--iters must be an integer >= 0 (0 keeps the random initial images), got {self.iterations!r}",
        )
        for name in ("num", "batch_size", "centre_every", "log_every"):
            value = getattr(self, name)
            _check(
                isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                f"--{name.replace('_', '-')} must be a positive integer, got {value!r}",
            )
        _check(self.lr > 0, f"SynthConfig.lr must be > 0, got {self.lr}")
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
        _check(0 <= self.sil_eps <= 1, f"sil_eps must be in [0, 1], got {self.sil_eps}")
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
        _check(
            self.device in ("auto", "cpu", "cuda"), f"--device must be auto, cpu or cuda, got {self.device!r}"
        )
        _check(self.version == SYNTH_CONFIG_VERSION, f"SynthConfig version {self.version!r} is not supported")

    @property
    def num_batches(self) -> int:
        return math.ceil(self.num / self.batch_size)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SynthConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        _check(not unknown, f"SynthConfig has no field {', '.join(map(repr, unknown))}")
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**kwargs)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


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
