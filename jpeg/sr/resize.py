"""Bicubic resizing as MATLAB's `imresize(img, scale, 'bicubic')`: how every SR benchmark makes its LR images.

MATLAB's algorithm (imresize.m, reproduced by the widely used Python ports such as fatheral/matlab_imresize
and BasicSR's `imresize`):
- the cubic kernel of Keys with a = -0.5, support 4;
- when shrinking, the kernel is stretched by 1/scale (antialiasing) and scaled by `scale`;
- output pixel x (1-based) samples input position u = x / scale + 0.5 * (1 - 1 / scale);
- borders are extended by symmetric reflection (the edge pixel repeated: 'symmetric' padding);
- weights of each output pixel are normalised to sum to 1;
- the two dimensions are resized one after the other, the one with the smaller scale first (rows
  first for equal scales), and for uint8 input each pass is rounded (half away from zero) and
  clipped back to uint8, because MATLAB's imresizemex returns the input's class.

Each pass is one dense [out, in] weight matrix applied with einsum, in float64.
How close this is to MATLAB: docs/design.md ("ODM: SR data"), measured through the published bicubic
baselines of Set5 / Set14.
"""

from __future__ import annotations

import math

import numpy as np

from ...common.errors import DataError


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's 'bicubic')."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    inner = (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
    outer = (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))
    return inner + outer


def resize_matrix(in_length: int, out_length: int, scale: float, antialias: bool = True) -> np.ndarray:
    """[out_length, in_length] float64 weights of one MATLAB bicubic pass (see module docstring)."""
    width = 4.0
    if scale < 1 and antialias:

        def kernel(x: np.ndarray) -> np.ndarray:
            return scale * cubic(scale * x)

        width = width / scale
    else:
        kernel = cubic
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    taps = math.ceil(width) + 2
    idx = left[:, None] + np.arange(taps)[None, :] - 1  # 0-based input indices
    weights = kernel(u[:, None] - idx - 1)
    weights /= weights.sum(axis=1, keepdims=True)
    # symmetric padding: ... 1 0 | 0 1 2 ... n-1 | n-1 n-2 ...
    mirror = np.concatenate([np.arange(in_length), np.arange(in_length - 1, -1, -1)])
    idx = mirror[np.mod(idx.astype(np.int64), mirror.size)]
    matrix = np.zeros((out_length, in_length), dtype=np.float64)
    rows = np.repeat(np.arange(out_length), taps)
    np.add.at(matrix, (rows, idx.reshape(-1)), weights.reshape(-1))
    return matrix


def _round_uint8(x: np.ndarray) -> np.ndarray:
    # MATLAB's round is half away from zero; values are clipped to [0, 255] first, so floor(x + 0.5).
    return np.floor(np.clip(x, 0, 255) + 0.5).astype(np.uint8)


def imresize(image: np.ndarray, scale: float, output_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Resize `image` [H, W] or [H, W, C] (uint8 or float) by `scale` as MATLAB's bicubic imresize.

    output_shape: (H', W'); default ceil(H * scale), ceil(W * scale) as MATLAB. uint8 in -> uint8 out
    (rounded after each pass, as MATLAB); float in -> float64 out (no rounding, no clipping).

    Raises DataError for an empty image, a scale <= 0 or an output of zero size.
    """
    if image.ndim not in (2, 3) or image.shape[0] < 1 or image.shape[1] < 1:
        raise DataError(f"cannot resize an image of shape {list(image.shape)}")
    if scale <= 0:
        raise DataError(f"resize scale must be > 0, got {scale}")
    h, w = image.shape[:2]
    out_h, out_w = output_shape if output_shape is not None else (math.ceil(h * scale), math.ceil(w * scale))
    if out_h < 1 or out_w < 1:
        raise DataError(f"resizing a {h}x{w} image by {scale} leaves nothing")
    is_uint8 = image.dtype == np.uint8
    out = image.astype(np.float64)
    scales = {0: out_h / h, 1: out_w / w} if output_shape is not None else {0: scale, 1: scale}
    for dim in sorted((0, 1), key=lambda d: scales[d]):
        size_in = out.shape[dim]
        size_out = out_h if dim == 0 else out_w
        matrix = resize_matrix(size_in, size_out, scales[dim])
        out = (
            np.einsum("oi,i...->o...", matrix, out) if dim == 0 else np.einsum("oi,hi...->ho...", matrix, out)
        )
        if is_uint8:
            out = _round_uint8(out).astype(np.float64)
    return out.astype(np.uint8) if is_uint8 else out


def bicubic_downscale(hr: np.ndarray, scale: int) -> np.ndarray:
    """The LR image of an HR uint8 image [H, W, C] whose sides are multiples of `scale`:
    `imresize(hr, 1 / scale)` (MATLAB), exactly H / scale x W / scale."""
    h, w = hr.shape[:2]
    if h % scale or w % scale:
        raise DataError(
            f"an HR image of {w}x{h} is not a multiple of the scale {scale}; crop it first (modcrop)"
        )
    return imresize(hr, 1 / scale, (h // scale, w // scale))
