"""MSE calibration: amax minimising the mean squared quantization error of the observed |x|.

Candidates are the bin centres of the |x| histogram from `start_bin` on (default 0: every centre;
pytorch-quantization starts at 128 of 2048, which forbids thresholds below max/16 and so misses
the low-bit optimum when a few outliers stretch the range); each is scored by sum_j count_j (fq(c_j) - c_j)^2 over the
bin centres c_j, fq being the symmetric grid of `bits` with that amax (the extra -2^(b-1) level of
a full-range signed grid is ignored: |x| cannot tell the sides apart). NVIDIA's pytorch-quantization
scores the same way; ModelOpt's histogram-MSE calibrator was found broken in our trial.
"""

from __future__ import annotations

import numpy as np
import torch

from .base import HistogramCalibrator


def histogram_mse(counts: np.ndarray, centers: np.ndarray, amaxes: np.ndarray, qmax: int) -> np.ndarray:
    """[m] float64: count-weighted squared error of quantizing `centers` on each grid `amaxes` [m]."""
    c = torch.from_numpy(np.asarray(centers, dtype=np.float64))
    w = torch.from_numpy(np.asarray(counts, dtype=np.float64))
    out = np.empty(len(amaxes), dtype=np.float64)
    chunk = max(1, (1 << 20) // max(1, c.numel()))  # bounds the [chunk, n] work array
    for lo in range(0, len(amaxes), chunk):
        a = torch.from_numpy(np.asarray(amaxes[lo : lo + chunk], dtype=np.float64))[:, None]
        scale = a / qmax
        q = torch.clamp(torch.round(c[None, :] / scale), 0, qmax) * scale
        out[lo : lo + chunk] = (((q - c[None, :]) ** 2) * w[None, :]).sum(dim=1).numpy()
    return out


class MseCalibrator(HistogramCalibrator):
    """amax (a histogram bin centre) minimising the quantization MSE of every |x| observed."""

    def __init__(
        self,
        bits: int = 8,
        axis: int | None = None,
        unsigned: bool = False,
        *,
        num_bins: int = 2048,
        start_bin: int = 0,
        stride: int = 1,
    ) -> None:
        super().__init__(bits, axis, unsigned, num_bins=num_bins)
        self._set_search("mse", start_bin, stride, min_start=0)

    def compute_amax(self) -> torch.Tensor:
        counts, edges = self.histogram()
        centers = (edges[:-1] + edges[1:]) / 2
        candidates = centers[min(self.start_bin, centers.size - 1) :: self.stride]
        if candidates.size == 0 or candidates[-1] <= 0:
            return torch.tensor(float(edges[-1]), dtype=torch.float32)
        candidates = candidates[candidates > 0]
        used = counts > 0  # empty bins add nothing to any score
        mse = histogram_mse(counts[used], centers[used], candidates, self.qmax)
        return torch.tensor(float(candidates[int(np.argmin(mse))]), dtype=torch.float32)
