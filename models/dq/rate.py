"""What the codes cost, and the numbers an autoencoder is scored by: bits/dim, code rates, PSNR, usage.

bits/dim of an image x with codes z (deterministic encoder):
    -log2 p(x) <= -log2 p(z) - log2 p(x | z),
so reconstruction NLL plus the code rate is an upper bound on the model's negative log-likelihood, per
dimension (3 H W). The code rate is given twice:

- "uniform": every code of level l costs log2 K_l bits (p(z) uniform): a bound that needs no prior;
- "prior":   -log2 p(z) under the factorised prior the EMA counts of each codebook estimate (Laplace
  smoothed; learned on the training data, one distribution per level and codebook, independent of
  position). This is the size an entropy coder reaches with that prior (within a few bytes per image).

The reconstruction NLL alone is *not* a likelihood bound; it is reported separately.
`CodeStats` sums what the training loop's validation (calibration.train) and `dctq evaluate`
(deploy) both report, in one float64 vector that torch.distributed can all-reduce.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from . import heads
from .autoencoder import HierarchicalAE

MAX_PSNR = 100.0
"""PSNR of an exact reconstruction (dB): a cap instead of infinity in per-image means."""

# ITU-R BT.601 luma, as the JPEG (JFIF) colour conversion uses.
LUMA = (0.299, 0.587, 0.114)


def uniform_bits(model: HierarchicalAE, codes: Sequence[Tensor]) -> Tensor:
    """Bits per image of `codes` at log2 K each: [B] float64."""
    total = sum(c[0].numel() * math.log2(k) for c, k in zip(codes, model.levels, strict=True))
    return torch.full((codes[0].shape[0],), float(total), dtype=torch.float64)


def prior_bits(model: HierarchicalAE, codes: Sequence[Tensor]) -> Tensor:
    """Bits per image of `codes` under the codebooks' EMA-count prior: [B] float64."""
    total = torch.zeros(codes[0].shape[0], dtype=torch.float64, device=codes[0].device)
    for level_codes, bottleneck in zip(codes, model.quantizers, strict=True):
        for g, book in enumerate(bottleneck.codebooks):
            logp = torch.log2(book.probabilities().double())
            total += -logp[level_codes[:, g]].sum(dim=(1, 2))
    return total


def psnr(reference: Tensor, recon: Tensor) -> Tensor:
    """Per-image PSNR (dB) of float tensors [B, ...] in 0..255: [B] float64, capped at MAX_PSNR."""
    err = (reference.double() - recon.double()).pow(2).flatten(1).mean(1)
    return (10 * torch.log10(255.0**2 / err.clamp(min=1e-30))).clamp(max=MAX_PSNR)


def luma(pixels: Tensor) -> Tensor:
    """Y of [B, 3, H, W] RGB in 0..255 (float): [B, H, W] float64."""
    w = torch.tensor(LUMA, dtype=torch.float64, device=pixels.device).view(1, 3, 1, 1)
    return (pixels.double() * w).sum(1)


class CodeStats:
    """Running sums over evaluated batches of one autoencoder (see the module docstring).

    Fields of the vector: images, dims, nll_nats, uniform_bits, prior_bits, psnr_rgb (sum of per-image
    PSNR), psnr_y, sq_err (sum of per-image mean squared errors, pixel units), then one histogram of K_l
    counts per level and codebook.
    """

    SCALARS = ("images", "dims", "nll_nats", "uniform_bits", "prior_bits", "psnr_rgb", "psnr_y", "sq_err")

    def __init__(self, model: HierarchicalAE) -> None:
        self.levels = tuple(model.levels)
        self.groups = model.groups
        self.likelihood = model.head in heads.LIKELIHOOD_HEADS
        size = len(self.SCALARS) + self.groups * sum(self.levels)
        self.values = torch.zeros(size, dtype=torch.float64)

    def add(self, model: HierarchicalAE, pixels: Tensor, out: Tensor, codes: Sequence[Tensor]) -> None:
        """Add a batch: pixels [B, 3, H, W] integers, the head's output, the codes of every level."""
        pixels = pixels.to(out.device)
        recon = model.mean_pixels(out).round()
        ref = pixels.double()
        row = [
            float(pixels.shape[0]),
            float(pixels[0].numel() * pixels.shape[0]),
            float(heads.nll(model.head, out, pixels, model.n_mix).double().sum()) if self.likelihood else 0.0,
            float(uniform_bits(model, codes).sum()),
            float(prior_bits(model, codes).sum()),
            float(psnr(ref, recon).sum()),
            float(psnr(luma(ref), luma(recon)).sum()),
            float((ref - recon.double()).pow(2).flatten(1).mean(1).sum()),
        ]
        hist = [
            torch.bincount(level_codes[:, g].flatten().cpu(), minlength=k).double()
            for level_codes, k in zip(codes, self.levels, strict=True)
            for g in range(self.groups)
        ]
        self.values += torch.cat([torch.tensor(row, dtype=torch.float64), *hist])

    def histograms(self) -> list[list[Tensor]]:
        """Code counts [K_l] per level (bottom first) and codebook."""
        out, start = [], len(self.SCALARS)
        for k in self.levels:
            level = []
            for _ in range(self.groups):
                level.append(self.values[start : start + k])
                start += k
            out.append(level)
        return out

    def summary(self) -> dict[str, Any]:
        """The report: bits/dim (reconstruction NLL, code rate uniform and under the prior, the two totals;
        None without a likelihood head), bits per image, PSNR (RGB and Y, mean over images, of the mean
        reconstruction rounded to 8 bits) and the mean squared error in pixel units, and per level the share of codes used and the perplexity
        (exp of the entropy of the code histogram), each the mean over the level's codebooks."""
        v = dict(zip(self.SCALARS, self.values[: len(self.SCALARS)].tolist(), strict=True))
        n, dims = max(v["images"], 1.0), max(v["dims"], 1.0)
        recon = v["nll_nats"] / (dims * math.log(2)) if self.likelihood else None
        uniform, prior = v["uniform_bits"] / dims, v["prior_bits"] / dims
        usage, perplexity = [], []
        for level in self.histograms():
            used = [float((h > 0).double().mean()) for h in level]
            ppl = []
            for h in level:
                p = h / h.sum().clamp(min=1)
                ppl.append(float(torch.exp(-(p[p > 0] * p[p > 0].log()).sum())))
            usage.append(sum(used) / len(used))
            perplexity.append(sum(ppl) / len(ppl))
        return {
            "images": int(v["images"]),
            "recon_bpd": recon,
            "code_bpd_uniform": uniform,
            "code_bpd_prior": prior,
            "bpd_uniform": None if recon is None else recon + uniform,
            "bpd_prior": None if recon is None else recon + prior,
            "code_bits_uniform": v["uniform_bits"] / n,
            "code_bits_prior": v["prior_bits"] / n,
            "psnr_rgb": v["psnr_rgb"] / n,
            "psnr_y": v["psnr_y"] / n,
            "mse": v["sq_err"] / n,
            "usage": usage,
            "perplexity": perplexity,
        }
