"""PSNR and SSIM of super-resolved images as the SR literature reports them (EDSR, PAMS, DDTB, ODM):

- on the Y channel of YCbCr (ITU-R BT.601, "studio swing": Y = 16 + 65.481 R + 128.553 G + 24.966 B for
  R, G, B in [0, 1], so Y lies in [16, 235]), computed in float from the 8-bit images without rounding
  Y (as EDSR-PyTorch's `calc_psnr` and BasicSR's `to_y_channel`; MATLAB's rgb2ycbcr would round, which
  moves PSNR by ~0.01 dB);
- with `scale` pixels cropped from every border (the model's output is least reliable there);
- the SR output first clamped to [0, 1] and rounded to 8 bits, as saving it as a PNG would;
- SSIM by Wang et al. 2004 on Y in [0, 255]: 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03,
  'valid' filtering, mean over the map (BasicSR's `calculate_ssim`, itself a port of the MATLAB code).

Images are tensors [C, H, W] or [N, C, H, W], C = 3 (RGB) or 1 (already Y, in [0, 1] units of 255 / 255),
values in [0, 1]. Everything is computed in float64.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ...common.errors import DctqError

BT601_Y = (65.481, 128.553, 24.966)
"""RGB -> Y weights of ITU-R BT.601 for RGB in [0, 1] and Y in [16, 235] (offset 16)."""


def to_uint8_image(x: Tensor) -> Tensor:
    """A model output [.., C, H, W] clamped to [0, 1] and rounded to the 8-bit grid, still in [0, 1]."""
    return torch.round(x.detach().clamp(0, 1) * 255) / 255


def rgb_to_y(x: Tensor) -> Tensor:
    """[.., 3, H, W] RGB in [0, 1] -> [.., 1, H, W] BT.601 luma in [16, 235] (float64, not rounded);
    a 1-channel input is taken as Y already and scaled the same way (Y = 16 + 219 * y)."""
    x = x.double()
    if x.shape[-3] == 1:
        return 16.0 + 219.0 * x
    if x.shape[-3] != 3:
        raise DctqError(f"images must have 1 (Y) or 3 (RGB) channels, got shape {list(x.shape)}")
    w = torch.tensor(BT601_Y, dtype=torch.float64, device=x.device).reshape(3, 1, 1)
    return 16.0 + (x * w).sum(dim=-3, keepdim=True)


def _prepare(sr: Tensor, hr: Tensor, crop: int) -> tuple[Tensor, Tensor]:
    if sr.shape != hr.shape:
        raise DctqError(f"SR output {list(sr.shape)} and HR image {list(hr.shape)} differ in shape")
    if crop < 0 or 2 * crop >= min(sr.shape[-2:]):
        raise DctqError(f"border crop {crop} leaves nothing of images {list(sr.shape[-2:])}")
    a, b = rgb_to_y(sr), rgb_to_y(hr)
    if crop:
        a, b = a[..., crop:-crop, crop:-crop], b[..., crop:-crop, crop:-crop]
    return a, b


def psnr(sr: Tensor, hr: Tensor, crop: int = 0) -> Tensor:
    """PSNR in dB on Y (peak 255) after cropping `crop` border pixels: [] or [N] float64.
    Identical images give inf."""
    a, b = _prepare(sr, hr, crop)
    mse = (a - b).square().flatten(-3).mean(-1)
    return 10 * torch.log10(255.0**2 / mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).reshape(1, 1, size, size)


def ssim(sr: Tensor, hr: Tensor, crop: int = 0) -> Tensor:
    """SSIM on Y in [0, 255] after cropping `crop` border pixels (see module docstring): [] or [N]."""
    a, b = _prepare(sr, hr, crop)
    single = a.dim() == 3
    if single:
        a, b = a[None], b[None]
    if min(a.shape[-2:]) < 11:
        raise DctqError(f"SSIM needs images of at least 11x11 after the crop, got {list(a.shape[-2:])}")
    window = _gaussian_window().to(a.device)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = F.conv2d(a, window), F.conv2d(b, window)
    var_a = F.conv2d(a * a, window) - mu_a**2
    var_b = F.conv2d(b * b, window) - mu_b**2
    cov = F.conv2d(a * b, window) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    out = ssim_map.flatten(1).mean(1)
    return out[0] if single else out


@dataclasses.dataclass(frozen=True)
class ImageScores:
    """PSNR (dB) and SSIM of one super-resolved image against its HR original."""

    name: str
    psnr: float
    ssim: float


def score_images(name: str, sr: Tensor, hr: Tensor, crop: int) -> ImageScores:
    """ImageScores of one image pair [C, H, W] (sr rounded to 8 bits first, see module docstring)."""
    sr = to_uint8_image(sr)
    value = float(psnr(sr, hr, crop))
    return ImageScores(name, value if math.isfinite(value) else float("inf"), float(ssim(sr, hr, crop)))
