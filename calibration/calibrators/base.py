"""What every calibrator shares: the observe/reset/compute_amax interface and a |x| histogram.

A calibrator watches the tensors a quantizer sees during calibration and returns `amax`, the
largest magnitude the quantizer represents (scale = amax / qmax). The histogram calibrators
(percentile, entropy, mse) collect one histogram of |x| and differ only in how they read it.
"""

from __future__ import annotations

import abc
import math
from typing import TYPE_CHECKING

import numpy as np
import torch

from ...common.errors import QuantizationError

if TYPE_CHECKING:
    from .statistics import ActivationStatistics


def qmax_for(bits: int, unsigned: bool) -> int:
    """Largest integer of the grid: 2^(b-1) - 1 signed (127 for int8), 2^b - 1 unsigned."""
    return (1 << bits) - 1 if unsigned else (1 << (bits - 1)) - 1


class Calibrator(abc.ABC):
    """Collects statistics of the tensors one quantizer sees and turns them into `amax`.

    bits / unsigned: the grid being calibrated for (the histogram methods weigh rounding against
    clipping on it); axis: the per-channel axis (amax then has one value per channel), None for
    one value per tensor. Calibrators are plain objects, not modules: nothing of them is saved.
    """

    def __init__(self, bits: int = 8, axis: int | None = None, unsigned: bool = False) -> None:
        if not 2 <= bits <= 8:
            raise QuantizationError(f"{type(self).__name__}: bits must be 2..8, got {bits}")
        self.bits = bits
        self.axis = axis
        self.unsigned = unsigned

    @property
    def qmax(self) -> int:
        return qmax_for(self.bits, self.unsigned)

    @abc.abstractmethod
    def observe(self, x: torch.Tensor) -> None:
        """Add the statistics of `x` (any shape, any float dtype); never changes `x`."""

    @abc.abstractmethod
    def reset(self) -> None:
        """Forget everything observed."""

    @property
    @abc.abstractmethod
    def observed(self) -> bool:
        """Whether any data has been observed since the last reset."""

    @abc.abstractmethod
    def compute_amax(self) -> torch.Tensor:
        """amax: [] float32 (per tensor) or [C] (per channel). Raises QuantizationError with no data."""

    def load_statistics(self, stats: ActivationStatistics) -> None:
        """Take cached statistics (calibrators/statistics.py) as if the data had been observed: after
        `reset()`, `compute_amax()` then gives the range calibrating on that data gives. Per-tensor
        calibrators only. Raises QuantizationError when this calibrator cannot use them."""
        raise QuantizationError(f"{type(self).__name__} cannot derive a range from cached statistics")

    def _no_data(self) -> QuantizationError:
        return QuantizationError(
            f"{type(self).__name__} has observed no data; run the forward loop over at least one batch first"
        )


class HistogramCalibrator(Calibrator):
    """Keeps a histogram of |x| over [0, edge] with `num_bins` bins of equal width.

    The range is set by the first batch; a later batch with a larger magnitude extends it by whole
    bins of the same width, so earlier counts never move. When the extension would pass
    `8 * num_bins` bins, adjacent bins are merged by an integer factor (exact for counts) to keep the
    cost bounded. Symmetric quantization treats x and -x alike, so |x| loses nothing.
    """

    _MAX_GROWTH = 8

    def __init__(
        self, bits: int = 8, axis: int | None = None, unsigned: bool = False, *, num_bins: int = 2048
    ) -> None:
        super().__init__(bits, axis, unsigned)
        if axis is not None:
            raise QuantizationError(
                f"{type(self).__name__} calibrates per tensor only (axis=None), got axis={axis}; "
                "use the 'max' calibrator for per-channel ranges"
            )
        if num_bins < 16:
            raise QuantizationError(f"{type(self).__name__}: num_bins must be >= 16, got {num_bins}")
        self.num_bins = num_bins
        self.reset()

    def _set_search(self, name: str, start_bin: int, stride: int, *, min_start: int) -> None:
        """Threshold search over bins start_bin, start_bin + stride, ... (entropy and MSE calibrators)."""
        if start_bin < min_start or stride < 1:
            raise QuantizationError(
                f"{name} calibrator needs start_bin >= {min_start} and stride >= 1, got {start_bin}, {stride}"
            )
        self.start_bin = int(start_bin)
        self.stride = int(stride)

    def reset(self) -> None:
        self._hist: torch.Tensor | None = None  # [n] float64 counts
        self._width = 0.0
        self._zeros = 0  # all-zero batches seen before the range is known

    @property
    def observed(self) -> bool:
        return self._hist is not None or self._zeros > 0

    def observe(self, x: torch.Tensor) -> None:
        with torch.no_grad():
            a = x.detach().abs().float().reshape(-1)
            if a.numel() == 0:
                return
            top = float(a.max())
            if not math.isfinite(top):
                raise QuantizationError(
                    f"{type(self).__name__} observed a non-finite value (inf/nan) in a tensor of shape "
                    f"{list(x.shape)}; check the model and its inputs"
                )
            if self._hist is None:
                if top == 0.0:
                    self._zeros += a.numel()
                    return
                self._width = top / self.num_bins
                self._hist = torch.zeros(self.num_bins, dtype=torch.float64)
                self._hist[0] += self._zeros
            n = self._hist.numel()
            if top > n * self._width:
                self._grow(math.ceil(top / self._width))
                n = self._hist.numel()
            edge = n * self._width
            counts = torch.histc(a, bins=n, min=0.0, max=edge).to(torch.float64).cpu()
            self._hist += counts

    def _grow(self, needed: int) -> None:
        if self._hist is None:
            return
        if needed > self._MAX_GROWTH * self.num_bins:
            factor = math.ceil(needed / self.num_bins)
            pad = (-self._hist.numel()) % factor
            hist = torch.cat([self._hist, self._hist.new_zeros(pad)])
            self._hist = hist.reshape(-1, factor).sum(dim=1)
            self._width *= factor
            needed = math.ceil(needed / factor)
        if needed > self._hist.numel():
            self._hist = torch.cat([self._hist, self._hist.new_zeros(needed - self._hist.numel())])

    def load_statistics(self, stats: ActivationStatistics) -> None:
        if stats.num_bins != self.num_bins:
            raise QuantizationError(
                f"{type(self).__name__} with num_bins={self.num_bins} cannot use statistics collected with "
                f"{stats.num_bins} bins; collect a new calibration cache, or keep num_bins={stats.num_bins}"
            )
        self.reset()
        self._zeros = stats.zeros
        if stats.hist.numel():
            self._hist = stats.hist.clone().to(torch.float64)
            self._width = stats.width

    def histogram(self) -> tuple[np.ndarray, np.ndarray]:
        """(counts [n] float64, edges [n+1] float64) of |x|. Raises QuantizationError with no data."""
        if self._hist is None:
            if self._zeros:
                # Only zeros seen: one bin holding them keeps every method well defined (amax ~ 0).
                return np.array([float(self._zeros)]), np.array([0.0, 0.0])
            raise self._no_data()
        counts = self._hist.numpy().copy()
        edges = np.arange(counts.size + 1, dtype=np.float64) * self._width
        return counts, edges
