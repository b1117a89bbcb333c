"""The DCT input stem: dequantize the quantized coefficients with the file's tables, then normalize.

Dequantization and per-frequency normalization run inside the model (and so inside the exported
engine), before the first quantized layer; the statistics are buffers, saved in the checkpoint and
exported to ONNX as constants.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable

import torch
from torch import nn

from ..common.errors import ModelError

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class StemStats:
    """Per-channel statistics of dequantized coefficients (float32 tensors).

    y_mean, y_std: [64]; cbcr_mean, cbcr_std: [128] (Cb's 64 then Cr's 64), channel k = 8u + v.
    y_count / cbcr_count: number of blocks each statistic was computed from.
    """

    y_mean: torch.Tensor
    y_std: torch.Tensor
    cbcr_mean: torch.Tensor
    cbcr_std: torch.Tensor
    y_count: int
    cbcr_count: int


class _Moments:
    """Streaming per-channel mean and M2 (Chan et al. merge) in float64."""

    def __init__(self, channels: int) -> None:
        self.count = 0
        self.mean = torch.zeros(channels, dtype=torch.float64)
        self.m2 = torch.zeros(channels, dtype=torch.float64)

    def update(self, x: torch.Tensor) -> None:
        """x: [N, C, H, W] any float/int dtype."""
        flat = x.detach().to(torch.float64).transpose(0, 1).reshape(x.shape[1], -1)
        n = flat.shape[1]
        if n == 0:
            return
        mean = flat.mean(dim=1)
        m2 = ((flat - mean[:, None]) ** 2).sum(dim=1)
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta**2 * (self.count * n / total)
        self.count = total

    def std(self, min_std: float) -> torch.Tensor:
        var = self.m2 / max(self.count, 1)
        return var.sqrt().clamp_min(min_std)


def dequantize(y: torch.Tensor, cbcr: torch.Tensor, qt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Multiply coefficients by their quantization steps.

    y: [N, 64, Hb, Wb], cbcr: [N, 128, Hb/2, Wb/2], qt: [N, 3, 64] (Y, Cb, Cr) -> same shapes, float.
    """
    n = qt.shape[0]
    q = qt.to(y.dtype if y.is_floating_point() else torch.float32)
    y_deq = y * q[:, 0].reshape(n, 64, 1, 1)
    c_deq = cbcr * q[:, 1:3].reshape(n, 128, 1, 1)
    return y_deq, c_deq


def _check_shapes(y: torch.Tensor, cbcr: torch.Tensor | None, qt: torch.Tensor) -> None:
    if cbcr is None:
        raise ModelError("this model needs chroma coefficients (cbcr); grayscale JPEGs have none")
    if y.dim() != 4 or y.shape[1] != 64:
        raise ModelError(f"y must be [N, 64, Hb, Wb], got {list(y.shape)}")
    if cbcr.dim() != 4 or cbcr.shape[1] != 128:
        raise ModelError(f"cbcr must be [N, 128, Hb/2, Wb/2], got {list(cbcr.shape)}")
    if qt.dim() != 3 or qt.shape[1:] != (3, 64):
        raise ModelError(f"qt must be [N, 3, 64], got {list(qt.shape)}")
    if not (y.shape[0] == cbcr.shape[0] == qt.shape[0]):
        raise ModelError(f"batch sizes differ: y {y.shape[0]}, cbcr {cbcr.shape[0]}, qt {qt.shape[0]}")
    if y.shape[2] != 2 * cbcr.shape[2] or y.shape[3] != 2 * cbcr.shape[3]:
        raise ModelError(
            f"chroma grid {list(cbcr.shape[2:])} is not half the luma grid {list(y.shape[2:])} (4:2:0 expected)"
        )


def compute_stem_stats(
    batches: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], *, min_std: float = 1.0
) -> StemStats:
    """Per-channel mean/std of dequantized coefficients over `batches` of (y, cbcr, qt).

    Streaming (one pass, float64 accumulators). `min_std` floors the std of near-constant channels
    (high frequencies that are almost always zero) so normalization does not blow them up; a
    dequantized coefficient is a multiple of its step (>= 1), so 1.0 is the natural floor.
    Raises ModelError for no data or malformed batches.
    """
    y_mom, c_mom = _Moments(64), _Moments(128)
    for batch in batches:
        if len(batch) != 3:
            raise ModelError(f"compute_stem_stats expects (y, cbcr, qt) tuples, got {len(batch)} items")
        y, cbcr, qt = batch
        _check_shapes(y, cbcr, qt)
        y_deq, c_deq = dequantize(y.to(torch.float64), cbcr.to(torch.float64), qt.to(torch.float64))
        y_mom.update(y_deq)
        c_mom.update(c_deq)
    if y_mom.count == 0:
        raise ModelError("compute_stem_stats got no coefficient blocks; is the data set empty?")
    stats = StemStats(
        y_mean=y_mom.mean.float(),
        y_std=y_mom.std(min_std).float(),
        cbcr_mean=c_mom.mean.float(),
        cbcr_std=c_mom.std(min_std).float(),
        y_count=y_mom.count,
        cbcr_count=c_mom.count,
    )
    logger.info("stem statistics from %d luma and %d chroma blocks", stats.y_count, stats.cbcr_count)
    return stats


class DctStem(nn.Module):
    """Dequantize (coefficient x step from `qt`) then normalize each frequency channel.

    forward(y: [N, 64, Hb, Wb], cbcr: [N, 128, Hb/2, Wb/2], qt: [N, 3, 64]) -> (y, cbcr) float,
    (coef * q - mean) / std per channel. Until `set_stats` is called, mean = 0 and std = 1.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("y_mean", torch.zeros(64))
        self.register_buffer("y_std", torch.ones(64))
        self.register_buffer("cbcr_mean", torch.zeros(128))
        self.register_buffer("cbcr_std", torch.ones(128))

    def set_stats(self, stats: StemStats) -> None:
        """Copy `stats` into the buffers. Raises ModelError on wrong shapes or non-positive std."""
        for name, expected in (("y_mean", 64), ("y_std", 64), ("cbcr_mean", 128), ("cbcr_std", 128)):
            value = torch.as_tensor(getattr(stats, name))
            if value.shape != (expected,):
                raise ModelError(f"StemStats.{name} must have shape [{expected}], got {list(value.shape)}")
            if not torch.isfinite(value).all():
                raise ModelError(f"StemStats.{name} holds non-finite values")
            if name.endswith("std") and (value <= 0).any():
                raise ModelError(f"StemStats.{name} must be > 0 everywhere")
            buf = getattr(self, name)
            buf.copy_(value.to(device=buf.device, dtype=buf.dtype))

    def has_stats(self) -> bool:
        """False while the buffers still hold the identity normalization (mean 0, std 1)."""
        return not (
            bool((self.y_mean == 0).all())
            and bool((self.y_std == 1).all())
            and bool((self.cbcr_mean == 0).all())
            and bool((self.cbcr_std == 1).all())
        )

    def forward(
        self, y: torch.Tensor, cbcr: torch.Tensor, qt: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not (torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling()):
            _check_shapes(y, cbcr, qt)
        y, cbcr = dequantize(y, cbcr, qt)
        y = (y - self.y_mean[None, :, None, None]) / self.y_std[None, :, None, None]
        cbcr = (cbcr - self.cbcr_mean[None, :, None, None]) / self.cbcr_std[None, :, None, None]
        return y, cbcr
