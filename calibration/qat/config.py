"""The options of quantization-aware training (`dctq quantize --method qat|odm`) and its progress events.

QatConfig holds the training loop's options (steps, optimizer, learning rates, data sizes) and the ODM
parts, each a switch of its own so the ablation rows of docs/benchmarks.md are single flags:

  v1 (arXiv 2307.13337v1): variance_weight > 0 (L_V, the spread of the features entering quantized
     layers), cooperative (apply a regulariser's gradient only where its sign agrees with the
     reconstruction gradient, per element), offsets (selective per-channel shift / scale offsets);
  v2 (ECCV 2024): mismatch_weight > 0 (L_M, distance of the features to the fixed quantization range,
     gated cooperatively), weight_clip_correction (a per-layer weight clipping ratio searched on the
     calibration batches).

`method_defaults("qat")` is plain QAT (learnable PAMS ranges, nothing of ODM); "odm" is v1 in full;
`odm_version=2` switches the ODM defaults to v2. Saved in the quantized checkpoint's
extra["quantization"]["qat"] and in the resume state (common.config's nested layout, version 1).
Bad values raise QuantizationConfigError naming the `dctq quantize` flag.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ...common.config import DEVICES, Config, check
from ...common.errors import QuantizationConfigError

METHODS = ("qat", "odm")
OFFSETS = ("none", "shift", "scale", "both")
WEIGHT_RANGES = ("track", "learn")


def _check(ok: bool, message: str) -> None:
    check(ok, message, QuantizationConfigError)


@dataclass(frozen=True)
class QatConfig(Config):
    """Options of quantization-aware training (module docstring); the flag of each is in its comment."""

    RESUMABLE = ("epochs", "device", "log_every", "num_workers")
    error = QuantizationConfigError

    method: str = "qat"
    epochs: int = 4  # --epochs
    steps_per_epoch: int = 250  # --steps-per-epoch; resume and the data order work per epoch
    batch_size: int = 16  # --batch-size, per process
    lr: float = 1e-4  # --lr: weights (Adam), cosine to 0 over all steps
    range_lr: float = 1e-3  # --range-lr: quantizer ranges, ODM offsets
    weight_decay: float = 0.0
    gradient: str = "pams"  # --range-gradient: "pams" (learnable clip) or "lsq" (symmetric grids only)
    weight_ranges: str = "track"  # "track": per-channel max of the current weights after every step; "learn"
    calib_batches: int = 8  # batches the ranges are calibrated on before training
    odm_version: int = 1  # --odm-version
    variance_weight: float = 0.0  # --variance-weight (lambda_V)
    cooperative: bool = False  # --cooperative/--no-cooperative
    offsets: str = "none"  # --offsets none|shift|scale|both
    offset_fraction: float = 0.25  # --offset-fraction: share of quantized layers that get each offset kind
    mismatch_weight: float = 0.0  # --mismatch-weight (lambda_M, v2)
    weight_clip_correction: bool = False  # --weight-clip-correction (v2)
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    log_every: int = 10

    def __post_init__(self) -> None:
        _check(self.method in METHODS, f"--method must be one of {METHODS} for QAT, got {self.method!r}.")
        for name, flag in (
            ("epochs", "--epochs"),
            ("steps_per_epoch", "--steps-per-epoch"),
            ("batch_size", "--batch-size"),
        ):
            _check(getattr(self, name) >= 1, f"{flag} must be >= 1, got {getattr(self, name)}.")
        _check(
            self.lr > 0 and self.range_lr >= 0,
            f"--lr must be > 0 and --range-lr >= 0, got {self.lr}, {self.range_lr}.",
        )
        _check(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}.")
        _check(
            self.gradient in ("pams", "lsq"), f"--range-gradient must be pams or lsq, got {self.gradient!r}."
        )
        _check(self.weight_ranges in WEIGHT_RANGES, f"weight_ranges must be one of {WEIGHT_RANGES}.")
        _check(self.calib_batches >= 1, f"calib_batches must be >= 1, got {self.calib_batches}.")
        _check(self.odm_version in (1, 2), f"--odm-version must be 1 or 2, got {self.odm_version}.")
        for name in ("variance_weight", "mismatch_weight"):
            value = getattr(self, name)
            _check(
                math.isfinite(value) and value >= 0, f"--{name.replace('_', '-')} must be >= 0, got {value}."
            )
        _check(self.offsets in OFFSETS, f"--offsets must be one of {OFFSETS}, got {self.offsets!r}.")
        _check(
            0 < self.offset_fraction <= 1, f"--offset-fraction must be in (0, 1], got {self.offset_fraction}."
        )
        odm_parts = self.odm_parts()
        _check(
            self.method == "odm" or not odm_parts,
            f"{', '.join(odm_parts)} belong(s) to --method odm; plain --method qat trains without them.",
        )
        _check(
            not (self.cooperative and self.variance_weight == 0 and self.mismatch_weight == 0),
            "--cooperative gates a regulariser: give --variance-weight or --mismatch-weight > 0 with it.",
        )
        _check(self.device in DEVICES, f"--device must be one of {DEVICES}, got {self.device!r}.")
        _check(self.num_workers >= 0 and self.log_every >= 1, "--workers must be >= 0 and log_every >= 1.")

    def odm_parts(self) -> list[str]:
        """The ODM flags this config sets (empty for plain QAT)."""
        parts = []
        if self.variance_weight:
            parts.append("--variance-weight")
        if self.cooperative:
            parts.append("--cooperative")
        if self.offsets != "none":
            parts.append("--offsets")
        if self.mismatch_weight:
            parts.append("--mismatch-weight")
        if self.weight_clip_correction:
            parts.append("--weight-clip-correction")
        return parts

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    @property
    def regularised(self) -> bool:
        return self.variance_weight > 0 or self.mismatch_weight > 0

    def replace(self, **changes: Any) -> QatConfig:
        return dataclasses.replace(self, **changes)


ODM_V1 = {"variance_weight": 0.05, "cooperative": True, "offsets": "both"}
"""ODM v1 in full: L_V with lambda_V 0.05 (docs/design.md, "ODM": on the CPU-scale EDSR x4 at W4A4, L1 starts
at 0.032 and L_V at 0.106, so lambda_V * L_V is about a sixth of the reconstruction loss), the cooperative
gate, both offset kinds."""
ODM_V2 = {"mismatch_weight": 1.0, "cooperative": True, "weight_clip_correction": True}
"""ODM v2 in full: L_M with lambda_M 1.0 (L_M is in units of the range: 6e-5 at W4A4, 0.014 at W2A2 on the
CPU-scale EDSR, against L1 0.032 / 0.042), gated cooperatively, and the layer-wise weight clipping correction."""


def method_defaults(method: str, odm_version: int = 1) -> dict[str, Any]:
    """QatConfig fields that `--method` (and `--odm-version`) set unless given: {} for qat, ODM_V1 / ODM_V2."""
    if method != "odm":
        return {}
    return dict(ODM_V2 if odm_version == 2 else ODM_V1)


@dataclasses.dataclass(frozen=True)
class QatStep:
    """Every `log_every` steps: means since the last event (rank 0). loss = rec + weighted regularisers;
    conflict: share of gradient elements whose regulariser and reconstruction gradients disagree in sign
    (None without a cooperative regulariser); score: top-1 (classifiers) or patch PSNR (SR)."""

    epoch: int
    step: int
    steps: int
    loss: float
    rec: float
    reg: float
    score: float
    conflict: float | None
    lr: float


@dataclasses.dataclass(frozen=True)
class QatEpochEnd:
    """An epoch of QAT ended and its resume state is written."""

    epoch: int
    epochs: int
    loss: float
    rec: float
    reg: float
    score: float
    conflict: float | None
    seconds: float


QatEvent = QatStep | QatEpochEnd
