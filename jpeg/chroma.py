"""Chroma layouts: bring a file's per-component block arrays onto the 4:2:0 coefficient grid.

4:2:0 chroma is taken as it is. 4:4:4 and 4:2:2 chroma is mapped in the DCT domain by an exact linear map,
never by decoding to pixels: dequantize, apply the matrix equivalent to "IDCT each block, average each
2x2 pixel group (4:4:4) or each vertical pixel pair (4:2:2), DCT", then re-quantize with the component's
own table (round half away from zero). Averaging is what libjpeg's encoder does when it subsamples, so a
mapped file is close to the same picture saved as 4:2:0 with the same tables.

Averaging 16 source pixels down to 8 never mixes two source blocks into one output pixel, so the map is a
sum of per-source-block 8x8 matrices along each axis: `T[a] = D S_a Dᵀ`, where `S_a` averages pixel
pairs of source block `a` (0 = first, 1 = second) into output rows `4a .. 4a+3`.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from ..common.errors import UnsupportedJpegError
from .dct import Array, dct_matrix, is_tensor
from .geometry import fit_block_grid

logger = logging.getLogger(__name__)

ACCEPTED_LAYOUTS = (
    "4:2:0 (Y 2x2, Cb/Cr 1x1)",
    "4:2:2 (Y 2x1, Cb/Cr 1x1)",
    "4:4:4 (all 1x1)",
    "grayscale (1 component)",
)


def _pair_average_maps() -> np.ndarray:
    """T: [2, 8, 8] float64; `T[a] @ X_a` summed over a = DCT of the pair-averaged IDCT of blocks X_0, X_1."""
    d = dct_matrix(np.float64)
    s = np.zeros((2, 8, 8))
    for a in range(2):
        for i in range(4):
            s[a, 4 * a + i, 2 * i] = 0.5
            s[a, 4 * a + i, 2 * i + 1] = 0.5
    return np.einsum("ux,axp,wp->auw", d, s, d)


# The exact 1-D map, precomputed once (a constant, not a cache).
PAIR_MAP = _pair_average_maps()


def round_half_away(x: Array) -> Array:
    """Round half away from zero (libjpeg's quantizer rule; np.round and torch.round tie to even),
    float in, float out: a numpy array or a torch tensor (same kind, device and dtype back)."""
    if is_tensor(x):
        return x.sign() * (x.abs() + 0.5).floor()
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


# Ties nudged away from zero before rounding: see map_round.
TIE_NUDGE = 1e-9


def map_round(x: np.ndarray) -> np.ndarray:
    """The map's re-quantization rounding: half away from zero after a nudge of TIE_NUDGE away from zero.

    Many mapped values are ties in exact arithmetic (a DC of (1 + 2) / 2, ...) and come out of the float64
    sums a few ulps to either side depending on the summation order; the nudge makes them round away from
    zero whatever the order, so this numpy map and the C map of dctq.jpeg._turbo agree bit for bit."""
    return round_half_away(x + np.sign(x) * TIE_NUDGE)


def downsample_444(blocks: np.ndarray) -> np.ndarray:
    """Exact DCT-domain 2x2 averaging: [..., 64, R, C] float -> [..., 64, ceil(R/2), ceil(C/2)] float.

    Odd R or C are zero-padded first (zero blocks are flat mid-grey after the level shift, and their pixels
    land only in output pixels that lie outside the source image).
    """
    x = fit_block_grid(blocks, 2 * math.ceil(blocks.shape[-2] / 2), 2 * math.ceil(blocks.shape[-1] / 2))
    lead = x.shape[:-3]
    r2, c2 = x.shape[-2] // 2, x.shape[-1] // 2
    x = x.reshape(*lead, 8, 8, r2, 2, c2, 2)
    out = np.einsum("aup,bvq,...pqiajb->...uvij", PAIR_MAP, PAIR_MAP, x, optimize=True)
    return out.reshape(*lead, 64, r2, c2)


def downsample_422(blocks: np.ndarray) -> np.ndarray:
    """Exact DCT-domain averaging of vertical pixel pairs: [..., 64, R, C] -> [..., 64, ceil(R/2), C] float."""
    x = fit_block_grid(blocks, 2 * math.ceil(blocks.shape[-2] / 2), blocks.shape[-1])
    lead = x.shape[:-3]
    r2, c = x.shape[-2] // 2, x.shape[-1]
    x = x.reshape(*lead, 8, 8, r2, 2, c)
    out = np.einsum("aup,...pviaj->...uvij", PAIR_MAP, x, optimize=True)
    return out.reshape(*lead, 64, r2, c)


def _layout_name(sampling: list[tuple[int, int]]) -> str:
    return " ".join(f"{h}x{v}" for h, v in sampling)


def _check_layout(sampling: list[tuple[int, int]]) -> str:
    (hy, vy), cb, cr = sampling
    if cb == (1, 1) and cr == (1, 1):
        if (hy, vy) == (2, 2):
            return "4:2:0"
        if (hy, vy) == (2, 1):
            return "4:2:2"
        if (hy, vy) == (1, 1):
            return "4:4:4"
    raise UnsupportedJpegError(
        f"unsupported chroma layout: sampling factors (h x v per component Y Cb Cr) {_layout_name(sampling)}; "
        f"dctq accepts {', '.join(ACCEPTED_LAYOUTS)}; re-encode the image as 4:2:0 "
        "(e.g. Pillow's save(..., subsampling=2))"
    )


def _map_chroma(blocks: np.ndarray, table: np.ndarray, layout: str) -> np.ndarray:
    """Dequantize, average in the DCT domain, re-quantize with the same table: float [64, r, c]."""
    q = np.asarray(table, dtype=np.float64).reshape(64, 1, 1)
    deq = blocks.astype(np.float64) * q
    mapped = downsample_444(deq) if layout == "4:4:4" else downsample_422(deq)
    return map_round(mapped / q)


def assemble_420(
    components: list[np.ndarray],
    sampling: list[tuple[int, int]],
    qt: list[np.ndarray],
    height: int,
    width: int,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Put a file's component block arrays on the 4:2:0 grid of the coefficient contract.

    Args:
        components: per component [64, rows, cols] int16 quantized blocks, channel k = 8*u + v; rows/cols
            as stored (with or without MCU padding).
        sampling: per component (h, v) sampling factors (horizontal first, as in the SOF header; note that
            jpeglib's `samp_factor` rows are (v, h)).
        qt: per component [64] quant table (natural row-major order), used to map 4:4:4 / 4:2:2 chroma.
        height, width: image size in pixels.

    Returns:
        y: [64, Hb, Wb] int16 with Hb = 2*ceil(H/16), Wb = 2*ceil(W/16), blocks past the stored ones zero;
        cbcr: [128, Hb/2, Wb/2] int16 (Cb's 64 then Cr's 64), None for a 1-component (grayscale) file.

    Raises:
        UnsupportedJpegError: a component count other than 1 or 3, or a sampling layout other than
            4:2:0, 4:2:2 or 4:4:4 (e.g. 4:4:0, 4:1:1, all 2x2, chroma sampled finer than luma).
    """
    if len(components) not in (1, 3) or len(sampling) != len(components) or len(qt) != len(components):
        raise UnsupportedJpegError(
            f"unsupported component count: {len(components)} block arrays, {len(sampling)} sampling factors, "
            f"{len(qt)} tables; dctq reads 1-component (grayscale) or 3-component YCbCr JPEGs"
        )
    hb = 2 * math.ceil(height / 16)
    wb = 2 * math.ceil(width / 16)
    y = fit_block_grid(np.asarray(components[0]), hb, wb).astype(np.int16, copy=False)
    if len(components) == 1:
        return y, None
    sampling = [(int(h), int(v)) for h, v in sampling]
    layout = _check_layout(sampling)
    if layout == "4:2:0":
        # Native layout (the common case, on the hot path of every data loader): no mapping, no
        # clipping; one crop/pad per plane straight into the output.
        cbcr = np.zeros((128, hb // 2, wb // 2), dtype=np.int16)
        for i, comp in enumerate(components[1:]):
            comp = np.asarray(comp)
            r, c = min(comp.shape[-2], hb // 2), min(comp.shape[-1], wb // 2)
            cbcr[64 * i : 64 * (i + 1), :r, :c] = comp[:, :r, :c]
        return y, cbcr
    planes = []
    for comp, table in zip(components[1:], qt[1:], strict=True):
        comp = np.asarray(comp)
        if layout == "4:2:0":
            mapped = comp
        else:
            # Blocks past the image's own block count carry only encoder padding: drop them so that
            # the averaged output sees zeros there, whatever the reader padded to.
            rows = math.ceil(height / 8)
            cols = math.ceil(width / 8) if layout == "4:4:4" else math.ceil(math.ceil(width / 2) / 8)
            comp = fit_block_grid(comp, min(rows, comp.shape[-2]), min(cols, comp.shape[-1]))
            mapped = _map_chroma(comp, table, layout)
        mapped = np.clip(fit_block_grid(mapped, hb // 2, wb // 2), -32768, 32767)
        planes.append(mapped.astype(np.int16))
    logger.debug("assembled %s chroma onto the 4:2:0 grid %dx%d blocks", layout, hb, wb)
    return y, np.concatenate(planes, axis=0)
