"""Max calibration: amax = the largest |x| observed (per tensor, or per channel along `axis`).

Always used for weights (per output channel), where every value is known and clipping any of them
only adds error; for activations it keeps outliers and so wastes resolution on them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ...common.errors import QuantizationError
from .base import Calibrator

if TYPE_CHECKING:
    from .statistics import ActivationStatistics


class MaxCalibrator(Calibrator):
    """Running max of |x|: [] per tensor, or [C] per channel along `axis` (x.shape[axis] == C)."""

    def __init__(self, bits: int = 8, axis: int | None = None, unsigned: bool = False) -> None:
        super().__init__(bits, axis, unsigned)
        self.reset()

    def reset(self) -> None:
        self._amax: torch.Tensor | None = None

    @property
    def observed(self) -> bool:
        return self._amax is not None

    def observe(self, x: torch.Tensor) -> None:
        with torch.no_grad():
            a = x.detach().abs().float()
            if self.axis is None:
                cur = a.max() if a.numel() else a.new_zeros(())
            else:
                if not -a.dim() <= self.axis < a.dim():
                    raise QuantizationError(
                        f"MaxCalibrator axis {self.axis} is out of range for a tensor of shape {list(x.shape)}"
                    )
                dims = [d for d in range(a.dim()) if d != self.axis % a.dim()]
                cur = a.amax(dim=dims) if dims else a
            if self._amax is None:
                self._amax = cur.clone()
            elif self._amax.shape != cur.shape:
                raise QuantizationError(
                    f"MaxCalibrator saw {cur.numel()} channels after {self._amax.numel()}: "
                    f"axis {self.axis} of shape {list(x.shape)} changed between batches"
                )
            else:
                self._amax = torch.maximum(self._amax, cur)

    def load_statistics(self, stats: ActivationStatistics) -> None:
        if self.axis is not None:
            raise QuantizationError("per-channel max calibration (weights) needs no cached statistics")
        self._amax = torch.tensor(stats.amax, dtype=torch.float32)

    def compute_amax(self) -> torch.Tensor:
        if self._amax is None:
            raise self._no_data()
        return self._amax.detach().clone().float()
