"""QSAM's quantization-aware confidence (QAC): a loss weight per sample from its JPEG quant tables.

Ma et al. (METHODS.md section 1): c(Q) = (1/128) * sum over the luma and chroma tables of 1/Q[u, v],
so 1 for all-ones (lossless) tables and ~0.006 at IJG quality 10; heavily quantized samples count less.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ...common.errors import DataError


def _check_qt(qt: Tensor) -> None:
    if qt.dim() != 3 or qt.shape[1] < 2 or qt.shape[2] != 64:
        raise DataError(
            f"quant tables must be qt [N, 3, 64] (Y, Cb, Cr; natural order), got {tuple(qt.shape)}"
        )


def qac_confidence(qt: Tensor) -> Tensor:
    """c(Q) per sample: qt [N, 3, 64] (any real dtype, steps >= 1) -> [N] float32.

    Uses the Y and Cb tables (qt[:, 0], qt[:, 1]); Cr shares Cb's table in IJG files, as QSAM assumes.

    Raises:
        DataError: qt is not [N, >=2, 64] or holds a step below 1 (not a valid JPEG table).
    """
    _check_qt(qt)
    steps = qt[:, :2].reshape(qt.shape[0], 128).to(torch.float32)
    if bool((steps < 1).any()):
        raise DataError(
            f"quant tables hold a step of {float(steps.min()):g}; JPEG steps are >= 1 "
            "(give raw table values, not normalised ones)"
        )
    return steps.reciprocal().sum(dim=1) / 128.0


def qac_weighted_loss(
    logits: Tensor,
    targets: Tensor,
    qt: Tensor,
    label_smoothing: float = 0.0,
    *,
    normalize: bool = False,
) -> Tensor:
    """Mean over samples of c(Q_i) * CE_i; logits [N, classes], targets [N] long, qt [N, 3, 64] -> scalar.

    The per-sample form of QSAM's per-quality loss `sum_q c(Q_q) * CE_q` (equal up to the number of
    qualities in the batch when each holds the same number of samples). By default no normalisation
    is applied, as in the reference code: c is ~0.03 at quality 60, so the loss and hence the
    effective learning rate shrink ~20x, which a short schedule cannot absorb. `normalize=True`
    divides the weights by their batch mean: the relative weighting of qualities is kept and the
    loss keeps the scale of plain cross-entropy, so the learning rate means what it says.

    Raises:
        DataError: as qac_confidence.
    """
    ce = F.cross_entropy(logits, targets, reduction="none", label_smoothing=label_smoothing)
    weights = qac_confidence(qt).to(ce.dtype)
    if normalize:
        weights = weights / weights.mean()
    return (weights * ce).mean()
