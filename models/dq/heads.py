"""Output heads of the autoencoder: what the decoder's last convolution predicts and how it is scored.

- "mse": 3 channels, the pixels scaled to [-1, 1]; trained by mean squared error. Not a likelihood: no
  bits/dim.
- "ce": 256-way categorical per sub-pixel, 768 channels laid out [B, 3, 256, H, W]; NLL is the cross-entropy.
- "mix": discretized mixture of `n_mix` logistics with linear dependence between R, G and B (PixelCNN++,
  as VDVAE's and the DQ code's `dmol_loss`), (3*3 + 1) * n_mix channels: n_mix mixture logits, then per
  colour channel n_mix means, n_mix log-scales (clamped at -7) and n_mix coefficients (tanh). Pixels in
  [-1, 1], bins of width 2/255, the edge bins open to -inf / +inf.

Every function takes pixels as integers 0..255 ([B, 3, H, W], any integer or float dtype holding them)
and returns per-image sums, so bits/dim = nll / (3 H W ln 2).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ...common.errors import ModelError

HEADS = ("mse", "ce", "mix")
LIKELIHOOD_HEADS = ("ce", "mix")
"""Heads that define p(x | z), hence a bits/dim."""


def check_head(head: str, n_mix: int = 10) -> None:
    """Raise ModelError for an unknown head or a non-positive mixture count."""
    if head not in HEADS:
        raise ModelError(f"head must be one of {HEADS}, got {head!r}")
    if n_mix < 1:
        raise ModelError(f"n_mix must be >= 1, got {n_mix}")


def head_channels(head: str, n_mix: int = 10) -> int:
    """Channels the decoder's last convolution outputs for `head`."""
    check_head(head, n_mix)
    return {"mse": 3, "ce": 3 * 256, "mix": 10 * n_mix}[head]


def to_unit(pixels: Tensor) -> Tensor:
    """Integer pixels 0..255 -> float32 in [-1, 1]."""
    return pixels.float() / 127.5 - 1.0


def _mix_params(out: Tensor, n_mix: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(logits [B, K, H, W], means, log_scales, coeffs each [B, 3, K, H, W]) of a "mix" output."""
    b, _, h, w = out.shape
    logits = out[:, :n_mix]
    rest = out[:, n_mix:].reshape(b, 3, 3 * n_mix, h, w)
    means = rest[:, :, :n_mix]
    log_scales = rest[:, :, n_mix : 2 * n_mix].clamp(min=-7.0)
    coeffs = torch.tanh(rest[:, :, 2 * n_mix :])
    return logits, means, log_scales, coeffs


def _mix_nll(out: Tensor, pixels: Tensor, n_mix: int) -> Tensor:
    logits, means, log_scales, coeffs = _mix_params(out.float(), n_mix)
    x = to_unit(pixels)[:, :, None]  # [B, 3, 1, H, W]
    # R's mean as given; G's and B's shifted by the true R (and G) values: the autoregressive dependence.
    m0 = means[:, 0]
    m1 = means[:, 1] + coeffs[:, 0] * x[:, 0]
    m2 = means[:, 2] + coeffs[:, 1] * x[:, 0] + coeffs[:, 2] * x[:, 1]
    centered = x - torch.stack([m0, m1, m2], 1)
    inv_scale = torch.exp(-log_scales)
    plus = inv_scale * (centered + 1.0 / 255)
    minus = inv_scale * (centered - 1.0 / 255)
    cdf_delta = torch.sigmoid(plus) - torch.sigmoid(minus)
    log_cdf_plus = plus - F.softplus(plus)  # the bin of 0 (open to -inf)
    log_one_minus_cdf_min = -F.softplus(minus)  # the bin of 255 (open to +inf)
    mid = inv_scale * centered
    log_pdf_mid = mid - log_scales - 2.0 * F.softplus(mid)
    inner = torch.where(
        cdf_delta > 1e-5, torch.log(cdf_delta.clamp(min=1e-12)), log_pdf_mid - math.log(127.5)
    )
    log_probs = torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, inner))
    per_component = log_probs.sum(1) + F.log_softmax(logits, dim=1)  # [B, K, H, W]
    return -torch.logsumexp(per_component, dim=1).sum(dim=(1, 2))


def nll(head: str, out: Tensor, pixels: Tensor, n_mix: int = 10) -> Tensor:
    """-log p(pixels | out) in nats per image, [B] float32 ("ce", "mix"). Raises ModelError for "mse"."""
    if head == "ce":
        b, _, h, w = out.shape
        logits = out.float().reshape(b, 3, 256, h, w).transpose(1, 2)  # [B, 256, 3, H, W]
        return F.cross_entropy(logits, pixels.long(), reduction="none").sum(dim=(1, 2, 3))
    if head == "mix":
        return _mix_nll(out, pixels, n_mix)
    raise ModelError(f"head {head!r} has no likelihood; use 'ce' or 'mix' for bits/dim")


def reconstruction_loss(head: str, out: Tensor, pixels: Tensor, n_mix: int = 10) -> Tensor:
    """The training loss of the head, a 0-dim tensor: mean NLL per sub-pixel in nats ("ce", "mix"; the
    DQ code's scale) or the mean squared error in [-1, 1] ("mse")."""
    if head == "mse":
        return F.mse_loss(out.float(), to_unit(pixels))
    return nll(head, out, pixels, n_mix).mean() / pixels[0].numel()


def mean_pixels(head: str, out: Tensor, n_mix: int = 10) -> Tensor:
    """The mean reconstruction in pixel units, [B, 3, H, W] float32 in [0, 255] (not rounded).

    "mse": the prediction; "ce": sum_v v p(v); "mix": the mixture mean sum_k pi_k m_k, where m_k follows
    R -> G -> B with each component's own means (the continuous logistic means, before the edge bins and
    the clipping to [-1, 1] are applied).
    """
    if head == "mse":
        unit = out.float()
    elif head == "ce":
        b, _, h, w = out.shape
        probs = torch.softmax(out.float().reshape(b, 3, 256, h, w), dim=2)
        values = torch.arange(256, dtype=probs.dtype, device=probs.device).view(1, 1, 256, 1, 1)
        return (probs * values).sum(2)
    elif head == "mix":
        logits, means, _, coeffs = _mix_params(out.float(), n_mix)
        m0 = means[:, 0]
        m1 = means[:, 1] + coeffs[:, 0] * m0
        m2 = means[:, 2] + coeffs[:, 1] * m0 + coeffs[:, 2] * m1
        weights = torch.softmax(logits, dim=1)[:, None]
        unit = (torch.stack([m0, m1, m2], 1) * weights).sum(2)
    else:
        check_head(head, n_mix)
    return ((unit.clamp(-1.0, 1.0) + 1.0) * 127.5).clamp(0.0, 255.0)
