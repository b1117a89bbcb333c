"""The training-time forward of quantizers with learnable ranges (QAT): the grid math shared by the
symmetric, unsigned and asymmetric grids, and the two gradients dctq offers for a range.

A grid is (scale, zero point, qmin, qmax): x -> (clamp(round(x / scale) + zero, qmin, qmax) - zero) * scale.
Its representable interval is [lo, hi] = [(qmin - zero) * scale, (qmax - zero) * scale].

- "lsq" (Esser et al. 2020): the step size is the parameter; its gradient is scaled by 1 / sqrt(N * qmax)
  and includes the rounding error inside the range (TensorQuantizer._lsq, symmetric grids only).
- "pams" (PAMS, Li et al. 2020, after PACT): the range bounds are the parameters; the input is clamped to
  [lo, hi] with the bounds as tensors, and the rounding error is added as a constant (straight-through).
  A bound then gets gradient only from the elements clipped at it (sign(x) * dL/dq outside, 0 inside), the
  input only from the elements inside. Works for symmetric (lo = qmin * hi / qmax), unsigned (lo = 0) and
  asymmetric ([lo, hi] both learnable) grids, per tensor or per channel.

Rounding is torch.round (half to even), which is what the fake-quant kernels of eval and export compute
(up to x * (1/s) against x / s on exact ties).
"""

from __future__ import annotations

import torch
from torch import Tensor

MIN_SPAN = 1e-8


def asymmetric_grid(lo: Tensor, hi: Tensor, bits: int) -> tuple[Tensor, Tensor]:
    """(scale, zero point) of the unsigned grid [0, 2^b - 1] that spans [lo, hi] (lo <= 0 <= hi is not
    required; the zero point is rounded and clamped into the grid, so 0 is represented when inside)."""
    levels = (1 << bits) - 1
    scale = (hi - lo).clamp_min(MIN_SPAN) / levels
    zero = torch.clamp(torch.round(-lo / scale), 0, levels)
    return scale, zero


def pams_quantize(
    x: Tensor, lo: Tensor, hi: Tensor, scale: Tensor, zero: Tensor, qmin: int, qmax: int
) -> Tensor:
    """Fake-quantize `x` on the grid (scale, zero, qmin, qmax) whose interval is [lo, hi], with the
    PAMS/PACT gradient (module docstring): lo and hi keep their autograd graph, scale and zero are
    used as constants in the rounding term. Shapes broadcast (per-channel bounds pre-shaped)."""
    c = torch.minimum(torch.maximum(x, lo), hi)
    s, z = scale.detach(), zero.detach()
    q = (torch.clamp(torch.round(c / s) + z, qmin, qmax) - z) * s
    return c + (q - c).detach()
