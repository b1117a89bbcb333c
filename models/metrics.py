"""Classification metrics on logits, shared by training, QSAM's meta stage and evaluation."""

from __future__ import annotations

from torch import Tensor


def topk_correct(logits: Tensor, labels: Tensor, ks: tuple[int, ...] = (1, 5)) -> list[Tensor]:
    """Number of rows whose label is among the k highest logits, for each k (clipped to the classes).

    logits: [N, classes]; labels: [N] int64. Returns one 0-dim int64 tensor per k, on logits' device.
    """
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hits = top == labels[:, None]
    return [hits[:, : min(k, logits.shape[1])].any(dim=1).sum() for k in ks]
