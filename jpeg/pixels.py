"""Decode coefficients back to pixels the way libjpeg does (for checks, previews and RGB baselines).

The path mirrors libjpeg-turbo's default decoder so results sit within IDCT rounding of Pillow's:
dequantize, IDCT (float here, libjpeg's is the "islow" integer one: samples differ by at most 1-2 levels),
level shift +128, round and clamp to 0..255 per component; chroma upsampled with libjpeg's "fancy"
triangle filter over the image's own chroma size; JFIF YCbCr->RGB with libjpeg's fixed-point tables;
cropped to height x width.
"""

from __future__ import annotations

import math

import numpy as np

from .coefficients import JpegCoefficients
from .dct import block_idct

# libjpeg's jdcolor.c fixed point: 16 fraction bits, tables built from FIX(c) = round(c * 2^16).
_SCALEBITS = 16
_ONE_HALF = 1 << (_SCALEBITS - 1)


def _fix(c: float) -> int:
    return int(c * (1 << _SCALEBITS) + 0.5)


def _plane(coefs: np.ndarray, table: np.ndarray) -> np.ndarray:
    """[64, hb, wb] quantized -> [8*hb, 8*wb] uint8 samples, as libjpeg's IDCT output stage produces."""
    deq = coefs.astype(np.float64) * np.asarray(table, dtype=np.float64).reshape(64, 1, 1)
    # libjpeg rounds ties up (DESCALE); float error can leave an exact tie (a DC-only block at x.5)
    # a hair below, hence the tiny nudge.
    return np.clip(np.floor(block_idct(deq) + (128.5 + 1e-7)), 0, 255).astype(np.uint8)


def upsample_h2v2_fancy(plane: np.ndarray) -> np.ndarray:
    """libjpeg's h2v2 "fancy" upsampling: [h, w] uint8 -> [2h, 2w] uint8.

    Each output sample weighs its nearest input 9/16, the two edge neighbours 3/16 each and the diagonal
    1/16 (a triangle filter), with libjpeg's alternating +8 / +7 rounding; edges replicate. libjpeg-turbo
    falls back to plain replication when the plane is at most 2 samples wide, and so do we.
    """
    h, w = plane.shape
    if w <= 2:
        return np.repeat(np.repeat(plane, 2, axis=0), 2, axis=1)
    p = plane.astype(np.int32)
    above = np.concatenate([p[:1], p[:-1]], axis=0)
    below = np.concatenate([p[1:], p[-1:]], axis=0)
    # Vertical pass: each input row gives an upper (3*this + above) and a lower (3*this + below) row.
    colsum = np.empty((2 * h, w), dtype=np.int32)
    colsum[0::2] = 3 * p + above
    colsum[1::2] = 3 * p + below
    left = np.concatenate([colsum[:, :1], colsum[:, :-1]], axis=1)
    right = np.concatenate([colsum[:, 1:], colsum[:, -1:]], axis=1)
    out = np.empty((2 * h, 2 * w), dtype=np.int32)
    out[:, 0::2] = (3 * colsum + left + 8) >> 4
    out[:, 1::2] = (3 * colsum + right + 7) >> 4
    return out.astype(np.uint8)


def ycbcr_to_rgb_u8(y: np.ndarray, cb: np.ndarray, cr: np.ndarray) -> np.ndarray:
    """JFIF YCbCr -> RGB exactly as libjpeg's ycc_rgb_convert: three [H, W] uint8 -> [H, W, 3] uint8."""
    yi = y.astype(np.int64)
    cbi = cb.astype(np.int64) - 128
    cri = cr.astype(np.int64) - 128
    r = yi + ((_fix(1.40200) * cri + _ONE_HALF) >> _SCALEBITS)
    g = yi + ((-_fix(0.34414) * cbi + _ONE_HALF - _fix(0.71414) * cri) >> _SCALEBITS)
    b = yi + ((_fix(1.77200) * cbi + _ONE_HALF) >> _SCALEBITS)
    return np.clip(np.stack([r, g, b], axis=-1), 0, 255).astype(np.uint8)


def to_pixels(coefs: JpegCoefficients) -> np.ndarray:
    """Decode a `JpegCoefficients` to pixels.

    Returns:
        [H, W, 3] uint8 RGB, or [H, W] uint8 for grayscale (H, W = coefs.height, coefs.width).

    The chroma is the 4:2:0 chroma of the contract: for files that were 4:4:4 or 4:2:2 it is the DCT-domain
    subsampled chroma, so the result differs from a full decoder's in fine colour detail.
    """
    height, width = coefs.height, coefs.width
    luma = _plane(coefs.y, coefs.qt[0])[:height, :width]
    if coefs.cbcr is None:
        return np.ascontiguousarray(luma)
    ch, cw = math.ceil(height / 2), math.ceil(width / 2)
    chroma = []
    for i in range(2):
        plane = _plane(coefs.cbcr[64 * i : 64 * (i + 1)], coefs.qt[1 + i])[:ch, :cw]
        chroma.append(upsample_h2v2_fancy(plane)[:height, :width])
    return ycbcr_to_rgb_u8(luma, chroma[0], chroma[1])


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB of two same-shape arrays (inf when equal).

    Raises:
        ValueError: the shapes differ.
    """
    if a.shape != b.shape:
        raise ValueError(f"psnr needs equal shapes, got {a.shape} and {b.shape}")
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)
