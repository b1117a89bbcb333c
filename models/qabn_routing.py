"""Which QABN branch serves which image (QSAM, METHODS.md section 1): hard-routing plans, QSAM's
base-stage batch layout, and oracle routing by the quant tables.

QABN layers (models/qabn.py) hold one BatchNorm branch per base quality, branch k <->
QSAM_BASE_QUALITIES[k]. Hard routing sends sample i to branch `branch_index[i]`: in the base stage the
batch is laid out in chunks, one per quality (`chunk_branch_index`); before the meta stage has trained
the mixing MLP, a model is evaluated with oracle routing, each image going to the base quality whose
tables are nearest to its own (`oracle_branch_index`). The distance uses QSAM's quantization-aware
confidence c(Q) (`qac_confidence`), which calibration/qsam/qac.py also turns into loss weights.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import Tensor

from ..common.errors import DataError, ModelError
from ..jpeg.quality import ijg_qt

QSAM_BASE_QUALITIES: tuple[int, ...] = (90, 60, 30, 10)
"""QSAM's base JPEG qualities; branch k of every QABN layer belongs to QSAM_BASE_QUALITIES[k]."""


@dataclasses.dataclass(frozen=True)
class RoutingPlan:
    """A branch index vector grouped once per batch: sorting by branch makes each group a slice."""

    size: int
    slices: tuple[tuple[int, int, int], ...]  # (branch, start, stop) in the sorted batch
    order: Tensor | None  # [N] long, sorted position -> sample; None when already sorted
    inverse: Tensor | None  # [N] long, sample -> sorted position


def plan_routing(branch_index: Tensor, num_branches: int) -> RoutingPlan:
    """Group `branch_index` [N] (integers in 0..num_branches-1) for hard routing.

    Raises:
        ModelError: empty vector, or an index outside 0..num_branches-1.
    """
    idx = torch.as_tensor(branch_index).reshape(-1).long()
    if idx.numel() == 0:
        raise ModelError("QABN routing got an empty branch_index; give one branch per sample")
    lo, hi = int(idx.min()), int(idx.max())
    if lo < 0 or hi >= num_branches:
        raise ModelError(
            f"QABN branch_index holds {lo}..{hi} but the model has {num_branches} branches (0..{num_branches - 1})"
        )
    order = inverse = None
    if bool((idx[1:] < idx[:-1]).any()):
        order = torch.argsort(idx, stable=True)
        inverse = torch.argsort(order)
        idx = idx[order]
    counts = torch.bincount(idx.cpu(), minlength=num_branches).tolist()
    slices, start = [], 0
    for k, c in enumerate(counts):
        if c:
            slices.append((k, start, start + c))
            start += c
    return RoutingPlan(idx.numel(), tuple(slices), order, inverse)


def chunk_branch_index(chunk_size: int, num_branches: int = len(QSAM_BASE_QUALITIES)) -> Tensor:
    """[num_branches * chunk_size] long: QSAM's base-stage layout, chunk k of the batch -> branch k."""
    return torch.arange(num_branches).repeat_interleave(chunk_size)


def _check_qt(qt: Tensor) -> None:
    if qt.dim() != 3 or qt.shape[1] < 2 or qt.shape[2] != 64:
        raise DataError(
            f"quant tables must be qt [N, 3, 64] (Y, Cb, Cr; natural order), got {tuple(qt.shape)}"
        )


def qac_confidence(qt: Tensor) -> Tensor:
    """QSAM's c(Q) per sample: (1/128) * sum of 1/Q over the luma and chroma tables, 1 for all-ones
    (lossless) tables, ~0.006 at IJG quality 10. qt [N, 3, 64] (any real dtype, steps >= 1) -> [N] float32.

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


def oracle_branch_index(qt: Tensor, qualities: Sequence[int] = QSAM_BASE_QUALITIES) -> Tensor:
    """The QABN branch for each image: the base quality whose IJG tables are nearest to `qt`.

    Distance is |log c(Q) - log c(Q_k)| with QSAM's confidence c (`qac_confidence`), so it works for
    any table, also for files of unknown quality. qt: [N, 3, 64] -> [N] int64 in 0..K-1.

    Raises:
        DataError: as qac_confidence.
    """
    c = qac_confidence(qt).clamp_min(1e-12).log()
    anchors = qac_confidence(ijg_qt(list(qualities))).log().to(c.device)
    return (c[:, None] - anchors[None, :]).abs().argmin(dim=1)
