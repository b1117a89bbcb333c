"""Entropy calibration: TensorRT's legacy INT8 entropy calibrator (IInt8EntropyCalibrator2).

Over the |x| histogram (2048 bins by default) it tries every threshold bin i from `start_bin` (128)
to the last one and keeps the one minimising KL(P || Q), where
- P is the histogram clipped at i: bins [0, i), with all the mass beyond i added to bin i-1;
- Q is bins [0, i) (without the clipped mass) merged into 2^(bits-1) equal groups (2^bits unsigned)
  and spread back evenly over the non-empty bins of each group: the histogram as the quantized grid
  sees it.
amax = the upper edge of bin i. Bin 0 is replaced by bin 1 first, so a spike of exact zeros (ReLU
outputs) does not dominate the divergence. Ties go to the larger threshold. This is the algorithm
of NVIDIA's pytorch-quantization and ModelOpt `HistogramCalibrator(method="entropy")`; here every
threshold is evaluated at once from prefix sums instead of one Python loop per threshold:
with group sums G_k and non-empty counts n_k, sum_j P_j log Q_j = sum_k G_k log(G_k / n_k) plus the
clipped mass times log Q_{i-1}.
"""

from __future__ import annotations

import numpy as np
import torch

from .base import HistogramCalibrator


def _xlogx(v: np.ndarray) -> np.ndarray:
    out = np.zeros_like(v, dtype=np.float64)
    pos = v > 0
    out[pos] = v[pos] * np.log(v[pos])
    return out


def kl_divergences(
    counts: np.ndarray, nbins: int, start_bin: int = 128, stride: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """(thresholds [m] int: bin indices i, kl [m] float64) for every tried threshold; inf where Q misses P.

    counts: [n] histogram of |x| (bin 0 already replaced by bin 1 if wanted); nbins: quantized levels.
    """
    bins = np.asarray(counts, dtype=np.float64)
    n = bins.size
    thresholds = np.arange(min(start_bin, n), n + 1, stride, dtype=np.int64)
    total = bins.sum()
    csum = np.concatenate([[0.0], np.cumsum(bins)])
    cnz = np.concatenate([[0], np.cumsum(bins != 0)])
    cxlogx = np.concatenate([[0.0], np.cumsum(_xlogx(bins))])

    k = np.arange(nbins + 1, dtype=np.int64)
    kl = np.empty(thresholds.size, dtype=np.float64)
    chunk = max(1, 262144 // (nbins + 1))
    for lo in range(0, thresholds.size, chunk):
        i = thresholds[lo : lo + chunk]
        # Group k of the first i bins is [ceil(k i / nbins), ceil((k+1) i / nbins)): np.digitize over
        # np.linspace(0, i, nbins + 1) exactly (nbins is a power of two, so k i / nbins is exact).
        starts = (k[None, :] * i[:, None] + nbins - 1) // nbins
        g = csum[starts[:, 1:]] - csum[starts[:, :-1]]
        nz = cnz[starts[:, 1:]] - cnz[starts[:, :-1]]
        with np.errstate(divide="ignore", invalid="ignore"):
            glog = np.where(g > 0, g * np.log(np.where(g > 0, g, 1.0) / np.maximum(nz, 1)), 0.0).sum(axis=1)
        last = bins[i - 1]
        outliers = total - csum[i]
        k_last = ((i - 1) * nbins) // i
        rows = np.arange(i.size)
        q_last = np.where(last > 0, g[rows, k_last] / np.maximum(nz[rows, k_last], 1), 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            p_log_q = glog + np.where(outliers > 0, outliers * np.log(q_last), 0.0)
            p_log_p = cxlogx[i - 1] + _xlogx(last + outliers)
            s = csum[i]
            div = (p_log_p - p_log_q) / total - np.log(total) + np.log(s)
        div[(s <= 0) | ((last <= 0) & (outliers > 0))] = np.inf
        kl[lo : lo + chunk] = div
    return thresholds, kl


class EntropyCalibrator(HistogramCalibrator):
    """amax minimising the KL divergence between the clipped and the quantized |x| histogram."""

    def __init__(
        self,
        bits: int = 8,
        axis: int | None = None,
        unsigned: bool = False,
        *,
        num_bins: int = 2048,
        start_bin: int = 128,
        stride: int = 1,
    ) -> None:
        super().__init__(bits, axis, unsigned, num_bins=num_bins)
        self._set_search("entropy", start_bin, stride, min_start=1)

    def compute_amax(self) -> torch.Tensor:
        counts, edges = self.histogram()
        if counts.size < 2:
            return torch.tensor(float(edges[-1]), dtype=torch.float32)
        counts = counts.copy()
        counts[0] = counts[1]
        nbins = 1 << (self.bits - 1 + int(self.unsigned))
        thresholds, kl = kl_divergences(counts, nbins, self.start_bin, self.stride)
        # Last minimum: among equal divergences the wider range clips less.
        best = thresholds[kl.size - 1 - int(np.argmin(kl[::-1]))]
        return torch.tensor(float(edges[best]), dtype=torch.float32)
