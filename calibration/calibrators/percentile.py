"""Percentile calibration: amax = the given percentile of |x| (99.99 clips one value in 10,000).

Read from the |x| histogram with linear interpolation inside the bin where the cumulative count
crosses the percentile, so the result is within one bin width (edge / num_bins) of the exact
percentile of all observed values.
"""

from __future__ import annotations

import numpy as np
import torch

from ...common.errors import QuantizationError
from .base import HistogramCalibrator


class PercentileCalibrator(HistogramCalibrator):
    """amax = `percentile` (0 < p <= 100) of every |x| observed, per tensor."""

    def __init__(
        self,
        bits: int = 8,
        axis: int | None = None,
        unsigned: bool = False,
        *,
        percentile: float = 99.99,
        num_bins: int = 2048,
    ) -> None:
        if not 0.0 < float(percentile) <= 100.0:
            raise QuantizationError(f"percentile must be in (0, 100], got {percentile}")
        self.percentile = float(percentile)
        super().__init__(bits, axis, unsigned, num_bins=num_bins)

    def compute_amax(self) -> torch.Tensor:
        counts, edges = self.histogram()
        total = counts.sum()
        target = total * self.percentile / 100.0
        cum = np.cumsum(counts)
        idx = min(int(np.searchsorted(cum, target, side="left")), counts.size - 1)
        before = cum[idx - 1] if idx > 0 else 0.0
        frac = (target - before) / counts[idx] if counts[idx] > 0 else 1.0
        amax = edges[idx] + (edges[idx + 1] - edges[idx]) * float(np.clip(frac, 0.0, 1.0))
        return torch.tensor(amax, dtype=torch.float32)
