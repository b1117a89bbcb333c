"""How two runs of the same tensor are compared: SQNR, cosine, max |diff| and top-1 agreement, accumulated
batch by batch (no tensor is kept), and the tolerances a comparison must meet.

A is the reference: SQNR = 10 log10(sum a^2 / sum (a - b)^2) over every element (inf when equal);
cosine is computed per sample (each sample's tensor flattened), reported as mean and minimum; top-1
agreement only for [N, classes] tensors (logits), the share of samples whose argmax agrees.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from ...common.errors import DctqError


def _finite(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


@dataclasses.dataclass(frozen=True)
class Tolerances:
    """What a comparison must meet (None: not checked): min_sqnr_db, min_cosine (every sample's cosine),
    max_abs_diff, min_agreement (share of samples, 0..1)."""

    min_sqnr_db: float | None = None
    min_cosine: float | None = None
    max_abs_diff: float | None = None
    min_agreement: float | None = None

    def __post_init__(self) -> None:
        if self.min_cosine is not None and not -1.0 <= self.min_cosine <= 1.0:
            raise DctqError(f"--min-cosine must be in [-1, 1], got {self.min_cosine}")
        if self.max_abs_diff is not None and self.max_abs_diff < 0:
            raise DctqError(f"--max-diff must be >= 0, got {self.max_abs_diff}")
        if self.min_agreement is not None and not 0.0 <= self.min_agreement <= 1.0:
            raise DctqError(
                f"--min-agreement must be a percentage in 0..100, got {100 * self.min_agreement:g}"
            )

    @property
    def any(self) -> bool:
        return any(v is not None for v in dataclasses.astuple(self))

    def to_dict(self) -> dict[str, float | None]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class TensorComparison:
    """One tensor (a model output, or a layer's output) of A against B over every compared sample."""

    name: str
    shape: tuple[int, ...]
    samples: int
    sqnr_db: float
    cosine_mean: float
    cosine_min: float
    max_abs_diff: float
    mean_abs_diff: float
    agreement: float | None
    failures: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "samples": self.samples,
            "sqnr_db": _finite(self.sqnr_db),
            "cosine_mean": self.cosine_mean,
            "cosine_min": self.cosine_min,
            "max_abs_diff": self.max_abs_diff,
            "mean_abs_diff": self.mean_abs_diff,
            "agreement": self.agreement,
            "failures": list(self.failures),
        }

    def checked(self, tol: Tolerances) -> TensorComparison:
        """This comparison with `failures` naming each tolerance it breaks."""
        failed = []
        if tol.min_sqnr_db is not None and self.sqnr_db < tol.min_sqnr_db:
            failed.append(f"SQNR {self.sqnr_db:.2f} dB < {tol.min_sqnr_db:g}")
        if tol.min_cosine is not None and self.cosine_min < tol.min_cosine:
            failed.append(f"cosine {self.cosine_min:.6f} < {tol.min_cosine:g}")
        if tol.max_abs_diff is not None and self.max_abs_diff > tol.max_abs_diff:
            failed.append(f"max |diff| {self.max_abs_diff:.4g} > {tol.max_abs_diff:g}")
        if (
            tol.min_agreement is not None
            and self.agreement is not None
            and self.agreement < tol.min_agreement
        ):
            failed.append(f"top-1 agreement {100 * self.agreement:.2f}% < {100 * tol.min_agreement:g}%")
        return dataclasses.replace(self, failures=tuple(failed))


class Accumulator:
    """Running sums of one tensor's comparison; `add(a, b)` per batch, `result(name)` at the end."""

    def __init__(self) -> None:
        self.signal = 0.0
        self.noise = 0.0
        self.abs_sum = 0.0
        self.max_abs = 0.0
        self.elements = 0
        self.cosines: list[torch.Tensor] = []
        self.agree = 0
        self.classified = True
        self.samples = 0
        self.shape: tuple[int, ...] = ()

    def add(self, a: torch.Tensor, b: torch.Tensor) -> None:
        """a, b: [N, ...] of the same shape (any float dtype; compared in float64 on the CPU).

        Raises DctqError when the shapes differ.
        """
        if a.shape != b.shape:
            raise DctqError(f"cannot compare tensors of shapes {list(a.shape)} and {list(b.shape)}")
        a64 = a.detach().to("cpu", torch.float64)
        b64 = b.detach().to("cpu", torch.float64)
        diff = a64 - b64
        self.signal += float(a64.pow(2).sum())
        self.noise += float(diff.pow(2).sum())
        self.abs_sum += float(diff.abs().sum())
        self.max_abs = max(self.max_abs, float(diff.abs().max()) if diff.numel() else 0.0)
        self.elements += diff.numel()
        n = a64.shape[0] if a64.dim() else 1
        fa, fb = a64.reshape(n, -1), b64.reshape(n, -1)
        norms = fa.norm(dim=1) * fb.norm(dim=1)
        dots = (fa * fb).sum(dim=1)
        # two all-zero samples agree perfectly; one zero against a non-zero one does not
        cos = torch.where(
            norms > 0, dots / norms.clamp_min(1e-300), (fa.abs().sum(1) + fb.abs().sum(1) == 0).double()
        )
        self.cosines.append(cos)
        if a64.dim() == 2:
            self.agree += int((a64.argmax(dim=1) == b64.argmax(dim=1)).sum())
        else:
            self.classified = False
        self.samples += n
        self.shape = tuple(a.shape[1:])

    def result(self, name: str) -> TensorComparison:
        cos = torch.cat(self.cosines) if self.cosines else torch.zeros(1, dtype=torch.float64)
        if self.noise == 0:
            sqnr = math.inf
        elif self.signal == 0:
            sqnr = -math.inf
        else:
            sqnr = 10 * math.log10(self.signal / self.noise)
        return TensorComparison(
            name=name,
            shape=self.shape,
            samples=self.samples,
            sqnr_db=sqnr,
            cosine_mean=float(cos.mean()),
            cosine_min=float(cos.min()),
            max_abs_diff=self.max_abs,
            mean_abs_diff=self.abs_sum / max(1, self.elements),
            agreement=self.agree / self.samples if self.classified and self.samples else None,
        )
