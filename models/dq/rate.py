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

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ...common.errors import ModelError
from . import heads
from .autoencoder import HierarchicalAE

MAX_PSNR = 100.0
"""PSNR of an exact reconstruction (dB): a cap instead of infinity in per-image means."""

# ITU-R BT.601 luma, as the JPEG (JFIF) colour conversion uses.
LUMA = (0.299, 0.587, 0.114)


@dataclasses.dataclass(frozen=True)
class CodeSpec:
    """What scoring an autoencoder's codes and outputs needs, without the model: the codebook size of
    each level (bottom first), codes per position, the head, and the prior (per level and codebook, the
    K_l probabilities of the EMA counts). `of(model)` reads a HierarchicalAE; `to_dict`/`from_dict` carry
    it in an exported decoder's sidecar, so ONNX Runtime results are scored the same way."""

    levels: tuple[int, ...]
    groups: int
    head: str
    n_mix: int
    priors: tuple[tuple[tuple[float, ...], ...], ...]

    @classmethod
    def of(cls, model: HierarchicalAE) -> CodeSpec:
        priors = tuple(
            tuple(tuple(book.probabilities().double().cpu().tolist()) for book in q.codebooks)
            for q in model.quantizers
        )
        return cls(tuple(model.levels), model.groups, model.head, model.n_mix, priors)

    def to_dict(self) -> dict[str, Any]:
        return {
            "levels": list(self.levels),
            "groups": self.groups,
            "head": self.head,
            "n_mix": self.n_mix,
            "priors": [[list(p) for p in level] for level in self.priors],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CodeSpec:
        """Raises ModelError for a malformed dict."""
        try:
            spec = cls(
                tuple(int(k) for k in data["levels"]),
                int(data["groups"]),
                str(data["head"]),
                int(data["n_mix"]),
                tuple(tuple(tuple(float(v) for v in p) for p in level) for level in data["priors"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"malformed autoencoder code spec ({type(exc).__name__}: {exc})") from None
        if len(spec.priors) != len(spec.levels) or any(
            len(level) != spec.groups or any(len(p) != k for p in level)
            for level, k in zip(spec.priors, spec.levels, strict=True)
        ):
            raise ModelError("malformed autoencoder code spec: priors do not match levels and groups")
        return spec

    @property
    def likelihood(self) -> bool:
        return self.head in heads.LIKELIHOOD_HEADS


def _spec(model: HierarchicalAE | CodeSpec) -> CodeSpec:
    return model if isinstance(model, CodeSpec) else CodeSpec.of(model)


def uniform_bits(model: HierarchicalAE | CodeSpec, codes: Sequence[Tensor]) -> Tensor:
    """Bits per image of `codes` at log2 K each: [B] float64."""
    total = sum(c[0].numel() * math.log2(k) for c, k in zip(codes, model.levels, strict=True))
    return torch.full((codes[0].shape[0],), float(total), dtype=torch.float64)


def prior_bits(model: HierarchicalAE | CodeSpec, codes: Sequence[Tensor]) -> Tensor:
    """Bits per image of `codes` under the codebooks' EMA-count prior: [B] float64."""
    spec = _spec(model)
    total = torch.zeros(codes[0].shape[0], dtype=torch.float64, device=codes[0].device)
    for level_codes, level in zip(codes, spec.priors, strict=True):
        for g, probs in enumerate(level):
            logp = torch.log2(torch.tensor(probs, dtype=torch.float64, device=level_codes.device))
            total += -logp[level_codes[:, g].long()].sum(dim=(1, 2))
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

    def __init__(self, model: HierarchicalAE | CodeSpec) -> None:
        self.spec = _spec(model)
        self.levels = self.spec.levels
        self.groups = self.spec.groups
        self.likelihood = self.spec.likelihood
        size = len(self.SCALARS) + self.groups * sum(self.levels)
        self.values = torch.zeros(size, dtype=torch.float64)

    def add(self, pixels: Tensor, out: Tensor, codes: Sequence[Tensor], recon: Tensor | None = None) -> None:
        """Add a batch: pixels [B, 3, H, W] integers, the head's output (None when `recon` alone is known:
        an exported decoder's pixels, then no NLL), the codes of every level; recon: the mean
        reconstruction in pixels (default: the head's mean)."""
        spec = self.spec
        device = out.device if out is not None else recon.device
        pixels = pixels.to(device)
        if recon is None:
            recon = heads.mean_pixels(spec.head, out, spec.n_mix)
        recon = recon.float().round().clamp(0, 255)
        ref = pixels.double()
        likely = self.likelihood and out is not None
        row = [
            float(pixels.shape[0]),
            float(pixels[0].numel() * pixels.shape[0]),
            float(heads.nll(spec.head, out, pixels, spec.n_mix).double().sum()) if likely else 0.0,
            float(uniform_bits(spec, codes).sum()),
            float(prior_bits(spec, codes).sum()),
            float(psnr(ref, recon).sum()),
            float(psnr(luma(ref), luma(recon)).sum()),
            float((ref - recon.double()).pow(2).flatten(1).mean(1).sum()),
        ]
        if not likely:
            self.likelihood = False
        hist = [
            torch.bincount(level_codes[:, g].flatten().cpu().long(), minlength=k).double()
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
