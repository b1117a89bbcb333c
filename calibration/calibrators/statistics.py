"""What one calibration pass saw at one activation quantizer, kept so that any calibrator can derive its
range from it later without another forward pass (`dctq quantize --calib-cache`).

Every calibrator reads one of two statistics: the running max of |x| (max) or the |x| histogram that
HistogramCalibrator builds (percentile, entropy, mse). `StatisticsCalibrator` collects both at once
(plus whether any value was negative, which decides unsigned low-bit grids), and
`Calibrator.load_statistics` hands them to a calibrator as if it had observed the data itself. The
histogram depends only on the tensors observed, in order, and on `num_bins`, so a range derived from the
statistics is bit for bit the range calibrating on the same batches gives.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from ...common.errors import QuantizationError
from .base import HistogramCalibrator


@dataclasses.dataclass(frozen=True)
class ActivationStatistics:
    """Statistics of the tensors one quantizer observed.

    amax: the largest |x| (0.0 when only zeros were seen); negative: whether any x < 0;
    hist: [n] float64 counts of |x| in bins of `width` from 0 (empty when only zeros were seen);
    zeros: values counted while only zeros had been seen (they sit in bin 0);
    num_bins: the bins the histogram started with (HistogramCalibrator's num_bins).
    """

    amax: float
    negative: bool
    hist: torch.Tensor
    width: float
    zeros: int
    num_bins: int

    def to_dict(self) -> dict[str, Any]:
        """Plain data and one tensor (what `torch.load(weights_only=True)` reads)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> ActivationStatistics:
        """Raises QuantizationError naming `where` for missing or mistyped entries."""
        try:
            stats = cls(
                amax=float(data["amax"]),
                negative=bool(data["negative"]),
                hist=torch.as_tensor(data["hist"], dtype=torch.float64),
                width=float(data["width"]),
                zeros=int(data["zeros"]),
                num_bins=int(data["num_bins"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise QuantizationError(f"{where}: damaged statistics ({type(exc).__name__}: {exc})") from None
        if stats.hist.dim() != 1:
            raise QuantizationError(
                f"{where}: damaged statistics (histogram of shape {list(stats.hist.shape)})"
            )
        return stats


class StatisticsCalibrator(HistogramCalibrator):
    """Collects the max, the sign and the |x| histogram together; as a calibrator it is max calibration."""

    def reset(self) -> None:
        super().reset()
        self._max = 0.0
        self._negative = False

    def observe(self, x: torch.Tensor) -> None:
        super().observe(x)
        if x.numel():
            with torch.no_grad():
                self._max = max(self._max, float(x.detach().abs().max()))
                self._negative = self._negative or bool((x.detach() < 0).any())

    def compute_amax(self) -> torch.Tensor:
        if not self.observed:
            raise self._no_data()
        return torch.tensor(self._max, dtype=torch.float32)

    def statistics(self) -> ActivationStatistics:
        """What was observed since the last reset. Raises QuantizationError when nothing was."""
        if not self.observed:
            raise self._no_data()
        hist = self._hist.clone() if self._hist is not None else torch.zeros(0, dtype=torch.float64)
        return ActivationStatistics(self._max, self._negative, hist, self._width, self._zeros, self.num_bins)
