"""The quantization bottleneck: Depthwise Quantization (DQ), the DQ code's VQ baseline and single-codebook VQ
in one module (Fostiropoulos & Boehm, CVPR 2022; METHODS.md section 5).

For a feature map h [B, C, H, W] and M codebooks of K codes:

- "dq":     z = Conv1x1(h) with M*d channels, split along channels into M groups of d; group m is
            quantized by codebook m. One 1x1 convolution with M*d outputs *is* M separate 1x1 convolutions
            C -> d (each output group has its own weights and bias), so the M projections of the paper are
            one module here. Representable set K^M, codebook parameters M*K*d.
- "vq":     the DQ code's baseline (its `VQVAE.quantize`): one shared projection C -> d, and the M
            codebooks all quantize the same d-dim vector; the M codes are concatenated (M*d channels).
- "single": one projection C -> M*d and one codebook of K codes of dimension M*d: the same M*K*d codebook
            parameters and the same projection as "dq", but K representable vectors.

Every mode outputs M*d channels, so the decoders after it are the same. Nearest code by squared Euclidean
distance, straight-through estimator q = z + sg(e - z), codebooks learned by EMA k-means (decay 0.99, Laplace
smoothing eps 1e-5), codes whose smoothed count falls below `restart_threshold` replaced by random current
encoder outputs (tiled with noise 0.01/sqrt(d) when there are fewer outputs than codes), initialisation
N(0, 1) (a restarted code's EMA statistics start afresh: Codebook.update); the latent loss of each codebook is mean((sg(e) - z)^2), summed over codebooks.

Under torch.distributed the EMA statistics are summed over processes and restart candidates come from rank
0, so every process holds the same codebooks (what one process would learn on the global batch).
The nearest-code search is written as distance, ArgMin and Gather (F.embedding), which is what the ONNX
export of the encoder holds.
"""

from __future__ import annotations

import contextlib
import math
from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from ...common.errors import ModelError

MODES = ("dq", "vq", "single")


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _float32(device: torch.device) -> contextlib.AbstractContextManager[None]:
    """Autocast off: distances and EMA statistics in float32, as the DQ code (no autocast on the meta device)."""
    if device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


class Codebook(nn.Module):
    """K codes of dimension d learned by EMA k-means (buffers only: no gradient reaches them).

    Buffers: embed [K, d] (the codes), cluster_size [K] (EMA of assignment counts), embed_avg [K, d] (EMA of
    the sums of assigned vectors). `cluster_size` normalised is also the code distribution the learned
    (factorised) prior of models.dq.rate uses.
    """

    def __init__(
        self,
        dim: int,
        size: int,
        *,
        decay: float = 0.99,
        eps: float = 1e-5,
        restart_threshold: float = 1.0,
    ) -> None:
        super().__init__()
        if dim < 1 or size < 2:
            raise ModelError(f"a codebook needs dim >= 1 and at least 2 codes, got dim={dim}, size={size}")
        if not 0 < decay < 1 or eps <= 0 or restart_threshold < 0:
            raise ModelError(
                f"codebook decay must be in (0, 1), eps > 0 and restart_threshold >= 0, got "
                f"{decay}, {eps}, {restart_threshold}"
            )
        self.dim, self.size = dim, size
        self.decay, self.eps, self.restart_threshold = decay, eps, restart_threshold
        embed = torch.randn(size, dim)
        self.register_buffer("embed", embed)
        self.register_buffer("cluster_size", torch.ones(size))
        self.register_buffer("embed_avg", embed.clone())

    def extra_repr(self) -> str:
        return f"size={self.size}, dim={self.dim}, decay={self.decay}"

    def nearest(self, z: Tensor) -> Tensor:
        """Index of the nearest code of each row: z [N, d] float -> [N] int64 (ties: the lowest index)."""
        embed = self.embed.to(z.dtype)
        dist_ = z.pow(2).sum(1, keepdim=True) - 2 * z @ embed.t() + embed.pow(2).sum(1)[None]
        return dist_.argmin(1)

    def lookup(self, codes: Tensor) -> Tensor:
        """The codes' vectors: codes [...] int64 -> [..., d] float32 (a Gather in ONNX)."""
        return F.embedding(codes, self.embed)

    def smoothed_counts(self) -> Tensor:
        """Laplace-smoothed EMA counts [K]: (n_k + eps) / (n + K eps) * n."""
        n = self.cluster_size.sum()
        return (self.cluster_size + self.eps) / (n + self.size * self.eps) * n

    def probabilities(self) -> Tensor:
        """The code distribution [K] the EMA counts estimate (Laplace smoothed, sums to 1)."""
        counts = self.smoothed_counts()
        return counts / counts.sum()

    def _candidates(self, z: Tensor) -> Tensor:
        """K random rows of z (tiled with noise 0.01/sqrt(d) when z has fewer rows), from rank 0 when distributed."""
        if z.shape[0] < self.size:
            repeats = math.ceil(self.size / z.shape[0])
            z = z.repeat(repeats, 1)
            z = z + torch.randn_like(z) * (0.01 / math.sqrt(self.dim))
        picked = z[torch.randperm(z.shape[0], device=z.device)[: self.size]].contiguous()
        if _distributed():
            dist.broadcast(picked, src=0)
        return picked

    @torch.no_grad()
    def update(self, z: Tensor, codes: Tensor) -> None:
        """One EMA k-means step on z [N, d] float32 assigned to codes [N]; restarts dead codes.

        A restarted code starts afresh: its vector is the candidate and its EMA statistics are reset to one
        `restart_threshold`-weighted observation of it. (The DQ code leaves a dead code's decayed sums in
        place, so a code that revives jumps to a point still mixed with its N(0, 1) initial vector, far from
        the encoder's outputs at the start of training: whole codebooks then stayed collapsed for hundreds of
        steps in our trials.)
        """
        onehot = F.one_hot(codes, self.size).to(z.dtype)
        counts = onehot.sum(0)
        sums = onehot.t() @ z
        if _distributed():
            dist.all_reduce(counts)
            dist.all_reduce(sums)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_avg.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        smoothed = self.smoothed_counts()
        dead = smoothed < self.restart_threshold
        if bool(dead.any()):
            candidates = self._candidates(z)
            weight = max(self.restart_threshold, self.eps)
            self.cluster_size[dead] = weight
            self.embed_avg[dead] = candidates[dead] * weight
            smoothed = self.smoothed_counts()
        self.embed.copy_(self.embed_avg / smoothed[:, None])


class BottleneckOutput(NamedTuple):
    """quantized [B, M*d, H, W] float32 (straight-through in training mode, the codes' vectors in eval mode), codes [B, G, H, W] int64 (G = M, or
    1 for "single"), latent_loss: 0-dim float32 (sum over codebooks of mean((sg(e) - z)^2))."""

    quantized: Tensor
    codes: Tensor
    latent_loss: Tensor


class QuantBottleneck(nn.Module):
    """A 1x1 projection and M codebooks in one of MODES (see the module docstring).

    Args:
        in_channels: channels of the feature map it quantizes.
        mode: "dq", "vq" or "single". num_codebooks: M. codebook_size: K. code_dim: d.
        decay, eps, restart_threshold: of the EMA k-means codebooks.

    Raises ModelError for an unknown mode or non-positive sizes.
    """

    def __init__(
        self,
        in_channels: int,
        *,
        mode: str = "dq",
        num_codebooks: int = 5,
        codebook_size: int = 32,
        code_dim: int = 64,
        decay: float = 0.99,
        eps: float = 1e-5,
        restart_threshold: float = 1.0,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ModelError(f"quantizer mode must be one of {MODES}, got {mode!r}")
        if in_channels < 1 or num_codebooks < 1 or code_dim < 1:
            raise ModelError(
                f"in_channels, num_codebooks and code_dim must be >= 1, got {in_channels}, {num_codebooks}, {code_dim}"
            )
        self.mode, self.num_codebooks, self.codebook_size, self.code_dim = (
            mode,
            num_codebooks,
            codebook_size,
            code_dim,
        )
        self.out_channels = num_codebooks * code_dim
        proj_out = code_dim if mode == "vq" else self.out_channels
        self.proj = nn.Conv2d(in_channels, proj_out, 1)
        groups = 1 if mode == "single" else num_codebooks
        dim = self.out_channels if mode == "single" else code_dim
        options = {"decay": decay, "eps": eps, "restart_threshold": restart_threshold}
        self.codebooks = nn.ModuleList(Codebook(dim, codebook_size, **options) for _ in range(groups))

    @property
    def groups(self) -> int:
        """Codes per position: M ("dq", "vq") or 1 ("single")."""
        return len(self.codebooks)

    @property
    def bits_per_position(self) -> float:
        """Uniform code rate: groups * log2(K) bits per spatial position."""
        return self.groups * math.log2(self.codebook_size)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, M={self.num_codebooks}, K={self.codebook_size}, d={self.code_dim}"

    def _group_inputs(self, z: Tensor) -> list[Tensor]:
        """The vector each codebook quantizes, as [B*H*W, dim] rows."""
        rows = z.permute(0, 2, 3, 1)
        if self.mode == "dq":
            parts = rows.split(self.code_dim, dim=-1)
        else:  # "vq": every codebook sees the same d-dim vector; "single": one codebook, the whole vector
            parts = [rows] * self.groups
        return [p.reshape(-1, p.shape[-1]) for p in parts]

    def forward(self, h: Tensor) -> BottleneckOutput:
        """h [B, C, H, W] -> BottleneckOutput; in training mode also one EMA step of every codebook."""
        b, _, height, width = h.shape
        with _float32(h.device):
            z = self.proj(h.float())
            quantized, codes, latent = [], [], z.new_zeros(())
            for book, rows in zip(self.codebooks, self._group_inputs(z), strict=True):
                idx = book.nearest(rows)
                e = book.lookup(idx)
                if self.training:
                    book.update(rows.detach(), idx)
                latent = latent + (e.detach() - rows).pow(2).mean()
                # The straight-through estimator in training; the codes' vectors themselves in eval mode, so
                # that evaluation and `decode` of the same codes agree bit for bit.
                quantized.append(rows + (e - rows).detach() if self.training else e)
                codes.append(idx.view(b, height, width))
            q = torch.cat(quantized, dim=-1).view(b, height, width, self.out_channels).permute(0, 3, 1, 2)
        return BottleneckOutput(q.contiguous(), torch.stack(codes, 1), latent)

    def encode(self, h: Tensor) -> Tensor:
        """The codes alone: h [B, C, H, W] -> [B, G, H, W] int64 (no codebook update)."""
        z = self.proj(h.float())
        b, _, height, width = z.shape
        return torch.stack(
            [
                book.nearest(rows).view(b, height, width)
                for book, rows in zip(self.codebooks, self._group_inputs(z), strict=True)
            ],
            1,
        )

    def decode(self, codes: Tensor) -> Tensor:
        """The quantized map of codes [B, G, H, W] int64 -> [B, M*d, H, W] float32."""
        if codes.dim() != 4 or codes.shape[1] != self.groups:
            raise ModelError(f"codes must be [B, {self.groups}, H, W], got {tuple(codes.shape)}")
        vectors = [book.lookup(codes[:, g]) for g, book in enumerate(self.codebooks)]
        return torch.cat(vectors, dim=-1).permute(0, 3, 1, 2).contiguous()
