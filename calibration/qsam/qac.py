"""QSAM's quantization-aware confidence (QAC): a loss weight per sample from its JPEG quant tables.

Ma et al. (METHODS.md section 1): c(Q) = (1/128) * sum over the luma and chroma tables of 1/Q[u, v],
so 1 for all-ones (lossless) tables and ~0.006 at IJG quality 10; heavily quantized samples count less.
c(Q) itself (`qac_confidence`) lives in models/qabn_routing.py, where oracle routing measures with it.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from ...models.qabn_routing import qac_confidence


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


def qac_batch_loss(logits: Tensor, targets: Tensor, qt: Tensor) -> Tensor:
    """QSAM's meta-stage loss as its code computes it: the sum over the batch of c(Q_i) times the batch-mean
    cross-entropy (`qac(inputs) * CE` in LiMaPKU/QSAM, whose `qac` sums 1/Q over the whole [B, 128] tensor).
    For a batch at one quality that is B * `qac_weighted_loss`: with B = 128, the episode losses outweigh
    the L1 pull towards one-hot weights, and the inner MAML step moves the mixer (METHODS.md, QSAM pitfall 1).

    Raises:
        DataError: as qac_confidence.
    """
    return qac_confidence(qt).sum().to(logits.dtype) * F.cross_entropy(logits, targets)
