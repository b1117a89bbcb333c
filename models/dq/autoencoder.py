"""The hierarchical autoencoder of the DQ paper (VQ-VAE-2-style top-down conditioning; METHODS.md section 5).

Levels count from the bottom (0, the finest). The bottom encoder is `coder_blocks` Encoder blocks (each a
stride-2 4x4 conv to C/2, a 3x3 conv to C, `res_blocks` ResBlocks and a ReLU: 32 -> 16 -> 8 on CIFAR);
each further level adds one Encoder block (8 -> 4 -> 2). Quantization runs top-down: level l+1's
quantized map is decoded up to level l's resolution (a stride-2 Decoder) and concatenated with level l's
encoding before level l's bottleneck (models.dq.quantizer). Every level's quantized map is brought to
half the input size with C channels (nearest Upsample and stride-2 Decoders); their concatenation
(L*C channels) goes through Decoder(stride 2) -> Decoder(stride 1) -> 3x3 conv -> the head's channels
(models.dq.heads).

Input: x [B, 3, H, W] float32, normalised with CIFAR-10's mean/std like every RGB model of dctq (jpeg.rgb);
the targets are the integer pixels recovered from it (`pixels_from_input`, exact for 8-bit images).
Fully convolutional: H and W may be any multiples of `stride_multiple` (2^(coder_blocks + levels - 1)).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ...common.errors import ModelError
from ...jpeg.rgb import CIFAR10_MEAN, CIFAR10_STD
from . import heads
from .quantizer import MODES, QuantBottleneck


class ResBlock(nn.Module):
    """x + Conv1x1(ReLU(Conv3x3(ReLU(x)))), the inner width `res_channels`."""

    def __init__(self, channels: int, res_channels: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, res_channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(res_channels, channels, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x)


def encoder_block(in_channels: int, channels: int, res_blocks: int, res_channels: int) -> nn.Sequential:
    """Halves the resolution: Conv4x4/2 (C/2) - ReLU - Conv3x3 (C) - ResBlocks - ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, channels // 2, 4, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(channels // 2, channels, 3, padding=1),
        *(ResBlock(channels, res_channels) for _ in range(res_blocks)),
        nn.ReLU(),
    )


def decoder_block(
    in_channels: int, out_channels: int, channels: int, res_blocks: int, res_channels: int, stride: int
) -> nn.Sequential:
    """Conv3x3 (C) - ResBlocks - ReLU, then with stride 2 a ConvTranspose4x4/2 to `out_channels` (doubling
    the resolution); with stride 1 the output has C channels (`out_channels` unused, as in the DQ code)."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, channels, 3, padding=1),
        *(ResBlock(channels, res_channels) for _ in range(res_blocks)),
        nn.ReLU(),
    ]
    if stride == 2:
        layers.append(nn.ConvTranspose2d(channels, out_channels, 4, stride=2, padding=1))
    return nn.Sequential(*layers)


class AEOutput(NamedTuple):
    """out: [B, head channels, H, W] the head's prediction; codes: one [B, G, H_l, W_l] int64 tensor per
    level, bottom first; latent_loss: 0-dim, summed over levels and codebooks."""

    out: Tensor
    codes: tuple[Tensor, ...]
    latent_loss: Tensor


class HierarchicalAE(nn.Module):
    """DQ's hierarchical autoencoder (see the module docstring).

    Args:
        levels: codebook size K of each level, bottom first (the DQ code's `n_hier`).
        mode: "dq", "vq" or "single" (models.dq.quantizer). num_codebooks: M. code_dim: d.
        channels: C. res_blocks / res_channels: ResBlocks per coder block and their inner width.
        coder_blocks: Encoder blocks of the bottom level (its downsampling is 2^coder_blocks).
        head: "mse", "ce" or "mix"; n_mix: logistics of "mix". beta: weight of the latent loss.
        decay, eps, restart_threshold: of the EMA codebooks. input_size: the size images are trained at
        (and that `dctq models` counts at); any multiple of `stride_multiple` runs.

    Raises ModelError for bad sizes, modes or heads.
    """

    task = "autoencode"
    input_kind = "rgb"

    def __init__(
        self,
        levels: Sequence[int] = (32, 32, 32),
        *,
        mode: str = "dq",
        num_codebooks: int = 5,
        code_dim: int = 64,
        channels: int = 256,
        res_blocks: int = 3,
        res_channels: int = 256,
        coder_blocks: int = 2,
        head: str = "mix",
        n_mix: int = 10,
        beta: float = 0.25,
        decay: float = 0.99,
        eps: float = 1e-5,
        restart_threshold: float = 1.0,
        input_size: int = 32,
    ) -> None:
        super().__init__()
        levels = tuple(int(k) for k in levels)
        if not levels or min(levels) < 2:
            raise ModelError(f"levels must list at least one codebook size >= 2, got {list(levels)}")
        if mode not in MODES:
            raise ModelError(f"mode must be one of {MODES}, got {mode!r}")
        if channels < 2 or channels % 2 or res_blocks < 0 or res_channels < 1 or coder_blocks < 1:
            raise ModelError(
                f"channels must be even and >= 2, res_blocks >= 0, res_channels >= 1, coder_blocks >= 1; got "
                f"{channels}, {res_blocks}, {res_channels}, {coder_blocks}"
            )
        heads.check_head(head, n_mix)
        self.levels, self.mode, self.head, self.n_mix, self.beta = levels, mode, head, n_mix, beta
        self.num_codebooks, self.code_dim, self.channels = num_codebooks, code_dim, channels
        self.coder_blocks = coder_blocks
        self.stride_multiple = 2 ** (coder_blocks + len(levels) - 1)
        if input_size % self.stride_multiple:
            raise ModelError(f"input_size {input_size} must be a multiple of {self.stride_multiple}")
        self.input_size = input_size
        c, rb, rc = channels, res_blocks, res_channels
        quant_options = {
            "mode": mode,
            "num_codebooks": num_codebooks,
            "code_dim": code_dim,
            "decay": decay,
            "eps": eps,
            "restart_threshold": restart_threshold,
        }
        top = len(levels) - 1
        self.encoders = nn.ModuleList(
            [nn.Sequential(*(encoder_block(3 if i == 0 else c, c, rb, rc) for i in range(coder_blocks)))]
            + [encoder_block(c, c, rb, rc) for _ in levels[1:]]
        )
        self.quantizers = nn.ModuleList(
            QuantBottleneck(c if level == top else 2 * c, codebook_size=k, **quant_options)
            for level, k in enumerate(levels)
        )
        q_channels = num_codebooks * code_dim
        # Level l's quantized map decoded to level l-1's resolution, the condition of level l-1's bottleneck.
        self.conditioners = nn.ModuleList(
            [nn.Identity()] + [decoder_block(q_channels, c, c, rb, rc, stride=2) for _ in levels[1:]]
        )
        upsamplers = [
            nn.Sequential(
                decoder_block(q_channels, c, c, rb, rc, stride=2 if coder_blocks > 1 else 1),
                *(decoder_block(c, c, c, rb, rc, stride=2) for _ in range(coder_blocks - 2)),
            )
        ]
        for level in range(1, len(levels)):
            scale = [nn.Upsample(scale_factor=2 ** (level - 1), mode="nearest")] if level > 1 else []
            upsamplers.append(
                nn.Sequential(
                    *scale,
                    decoder_block(q_channels, c, c, rb, rc, stride=2),
                    *(decoder_block(c, c, c, rb, rc, stride=2) for _ in range(coder_blocks - 1)),
                )
            )
        self.upsamplers = nn.ModuleList(upsamplers)
        self.decoder = nn.Sequential(
            decoder_block(c * len(levels), c, c, rb, rc, stride=2),
            decoder_block(c, c, c, rb, rc, stride=1),
            nn.Conv2d(c, heads.head_channels(head, n_mix), 3, padding=1),
        )
        mean = torch.tensor(CIFAR10_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(CIFAR10_STD, dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("pixel_mean", mean, persistent=False)
        self.register_buffer("pixel_std", std, persistent=False)

    # ------------------------------------------------------------------------------------ pieces

    @property
    def groups(self) -> int:
        """Codes per position and level: M, or 1 for "single"."""
        return self.quantizers[0].groups

    def code_shapes(self, height: int, width: int) -> list[tuple[int, int, int]]:
        """(G, H_l, W_l) of each level's codes for an input of height x width, bottom first."""
        first = 2**self.coder_blocks
        return [
            (self.groups, height // (first * 2**i), width // (first * 2**i)) for i in range(len(self.levels))
        ]

    def check_size(self, height: int, width: int) -> None:
        """Raise ModelError unless height and width are positive multiples of `stride_multiple`."""
        m = self.stride_multiple
        if height < m or width < m or height % m or width % m:
            raise ModelError(
                f"the autoencoder takes images whose sides are multiples of {m} pixels, got {width}x{height}"
            )

    def pixels_from_input(self, x: Tensor) -> Tensor:
        """The integer pixels [B, 3, H, W] int64 (0..255) that the normalised input x came from."""
        return torch.round((x.float() * self.pixel_std + self.pixel_mean) * 255.0).clamp(0, 255).long()

    @staticmethod
    def pixels_of(x: Tensor) -> Tensor:
        """`pixels_from_input` without a model (CIFAR-10's mean/std, what every dctq RGB input uses)."""
        mean = torch.tensor(CIFAR10_MEAN, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(CIFAR10_STD, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
        return torch.round((x.float() * std + mean) * 255.0).clamp(0, 255).long()

    def _encodings(self, x: Tensor) -> list[Tensor]:
        self.check_size(x.shape[-2], x.shape[-1])
        encodings, h = [], x
        for block in self.encoders:
            h = block(h)
            encodings.append(h)
        return encodings

    def _decode_quantized(self, quantized: Sequence[Tensor]) -> Tensor:
        ups = [up(q) for up, q in zip(self.upsamplers, quantized, strict=True)]
        return self.decoder(torch.cat(ups, 1))

    # ----------------------------------------------------------------------------------- forward

    def forward(self, x: Tensor, qt: Tensor | None = None) -> AEOutput:
        """x [B, 3, H, W] normalised -> AEOutput (training mode also updates the codebooks). `qt`, the quant
        tables RGB batches carry, is accepted and ignored, as by every RGB model of dctq."""
        encodings = self._encodings(x)
        top = len(self.levels) - 1
        quantized: list[Tensor] = [x] * len(self.levels)
        codes: list[Tensor] = [x] * len(self.levels)
        latent = x.new_zeros((), dtype=torch.float32)
        condition = None
        for level in range(top, -1, -1):
            h = encodings[level] if condition is None else torch.cat([condition, encodings[level]], 1)
            result = self.quantizers[level](h)
            quantized[level], codes[level] = result.quantized, result.codes
            latent = latent + result.latent_loss
            if level > 0:
                condition = self.conditioners[level](result.quantized)
        return AEOutput(self._decode_quantized(quantized), tuple(codes), latent)

    def encode(self, x: Tensor) -> tuple[Tensor, ...]:
        """The codes of x: one [B, G, H_l, W_l] int64 tensor per level, bottom first (no codebook update)."""
        encodings = self._encodings(x)
        codes: list[Tensor] = [x] * len(self.levels)
        condition = None
        for level in range(len(self.levels) - 1, -1, -1):
            h = encodings[level] if condition is None else torch.cat([condition, encodings[level]], 1)
            codes[level] = self.quantizers[level].encode(h)
            if level > 0:
                condition = self.conditioners[level](self.quantizers[level].decode(codes[level]))
        return tuple(codes)

    def decode(self, codes: Sequence[Tensor]) -> Tensor:
        """The head's output [B, head channels, H, W] for the codes of every level, bottom first."""
        if len(codes) != len(self.levels):
            raise ModelError(f"decode needs the codes of {len(self.levels)} levels, got {len(codes)}")
        return self._decode_quantized([q.decode(c) for q, c in zip(self.quantizers, codes, strict=True)])

    def loss(self, output: AEOutput, pixels: Tensor) -> tuple[Tensor, Tensor]:
        """(training loss L_rec + beta * L_latent, L_rec): 0-dim tensors (heads.reconstruction_loss)."""
        recon = heads.reconstruction_loss(self.head, output.out, pixels, self.n_mix)
        return recon + self.beta * output.latent_loss, recon

    def mean_pixels(self, out: Tensor) -> Tensor:
        """The mean reconstruction [B, 3, H, W] float32 in [0, 255] of a head output."""
        return heads.mean_pixels(self.head, out, self.n_mix)
