"""Automatic fallback: return quantized layers to float, most sensitive first, until the accuracy drop
against the FP model on held-out images is at most `max_drop` points (`dctq quantize --max-drop`).

The order is the sensitivity ranking (analysis.py: what leaving each layer in float gains). After each
returned layer the model is scored again; the first prefix of the ranking that meets the drop is kept and
made permanent with `quant.layers.to_float` (the recipe gains one "skip" rule per returned layer, so the
checkpoint reloads as exactly this model). When no prefix short of returning every layer meets it, the
model keeps the prefix that came closest and the result says the drop was not met.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from torch import nn

from ...common.errors import QuantizationError
from ..quant.layers import layers_in_float, quantized_layers, to_float
from .analysis import HeldOut, Score, SensitivityReport, finite, score

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class FallbackStep:
    """The model after returning `layer` (and every layer before it) to float."""

    layer: str
    score: Score


@dataclasses.dataclass(frozen=True)
class FallbackResult:
    """What the fallback did: the drop asked for and reached, and the layers it returned, in order."""

    max_drop: float
    fp: Score
    start: Score
    steps: tuple[FallbackStep, ...]
    returned: tuple[str, ...]
    met: bool

    @property
    def final(self) -> Score:
        """The score of the model kept (the start when nothing was returned)."""
        kept = len(self.returned)
        return self.steps[kept - 1].score if kept else self.start

    def drop(self, s: Score) -> float:
        """Top-1 points `s` is below FP."""
        return 100 * (self.fp.top1 - s.top1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_drop_points": self.max_drop,
            "met": self.met,
            "fp_top1": 100 * self.fp.top1,
            "start_top1": 100 * self.start.top1,
            "final_top1": 100 * self.final.top1,
            "final_drop_points": self.drop(self.final),
            "returned_to_float": list(self.returned),
            "steps": [
                {
                    "layer": s.layer,
                    "top1": 100 * s.score.top1,
                    "drop_points": self.drop(s.score),
                    "sqnr_db": finite(s.score.sqnr_db),
                }
                for s in self.steps
            ],
        }


def fallback(
    qmodel: nn.Module,
    data: HeldOut,
    ranking: SensitivityReport,
    max_drop: float,
    *,
    progress: Callable[[int, int, str], None] | None = None,
) -> FallbackResult:
    """Return layers of `qmodel` to float in `ranking`'s order until the top-1 drop on `data` is at most
    `max_drop` points; modifies `qmodel` in place (see the module docstring).

    Raises QuantizationError for a negative max_drop or a ranking of another model's layers.
    """
    if max_drop < 0:
        raise QuantizationError(f"--max-drop must be >= 0 points, got {max_drop}")
    order = ranking.ranking()
    known = quantized_layers(qmodel)
    if any(name not in known for name in order):
        raise QuantizationError("the sensitivity ranking names layers this model does not quantize")
    fp, start = ranking.fp, score(qmodel, data)
    steps: list[FallbackStep] = []

    def drop(s: Score) -> float:
        return 100 * (fp.top1 - s.top1)

    keep = 0
    met = drop(start) <= max_drop
    # Returning every layer would leave a float model: stop one short.
    for i, name in enumerate(order[: len(known) - 1] if not met else [], start=1):
        with layers_in_float(qmodel, order[:i]):
            now = score(qmodel, data)
        steps.append(FallbackStep(name, now))
        if progress is not None:
            progress(i, len(order), name)
        logger.info("returned %s to float: top-1 %.2f%% (drop %.2f points)", name, 100 * now.top1, drop(now))
        if drop(now) <= max_drop:
            keep, met = i, True
            break
    if not met and steps:
        best = min(range(len(steps)), key=lambda j: (drop(steps[j].score), j))
        keep = best + 1 if drop(steps[best].score) < drop(start) else 0
        logger.warning(
            "the drop of %.2f points was not met; kept the closest (%d layers in float)", max_drop, keep
        )
    returned = tuple(order[:keep])
    if returned:
        to_float(qmodel, returned)
    return FallbackResult(max_drop, fp, start, tuple(steps), returned, met)
