"""The 8x8 block DCT-II as JPEG uses it, in numpy and (differentiably) in torch.

JPEG's forward DCT (ITU T.81 A.3.3, libjpeg's scaling) is

    F(u, v) = 1/4 C(u) C(v) sum_{x,y} f(x, y) cos((2x+1)uπ/16) cos((2y+1)vπ/16),   C(0) = 1/√2, else 1,

with x the row (vertical) and y the column inside the block, which is exactly the orthonormal 2-D DCT-II:
`F = D f Dᵀ` with `D[u, x] = c(u) cos((2x+1)uπ/16)`, `c(0) = √(1/8)`, `c(u>0) = √(2/8)`. Coefficients are
laid out on channels `k = 8*u + v` (u vertical frequency, v horizontal), as in the coefficient contract.

The transforms here are pure linear maps: the JPEG level shift (subtract 128 before the DCT, add it after
the IDCT) and (de)quantization belong to the caller. `rgb_to_coefficients` is the one place that does the
whole forward path (colour conversion, level shift, 2x2 chroma averaging, DCT) for synthesis code that
optimises pixels and needs coefficients.

Every public function takes a numpy array or a torch tensor and returns the same kind; torch results keep
the input's device and dtype and are differentiable.
"""

from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from ..common.errors import DctqError

if TYPE_CHECKING:
    import torch

Array = TypeVar("Array", np.ndarray, "torch.Tensor")


def is_tensor(x: object) -> bool:
    """Whether `x` is a torch tensor, without importing torch.

    A tensor can only exist once torch is loaded, so this module (and the JPEG reader, which uses it
    through chroma.py) leaves the import of torch (seconds) to callers that actually have tensors.
    """
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


class BlockGridError(DctqError, ValueError):
    """A size that does not fit the 8x8 block / 16x16 MCU grid (odd block counts, sizes not divisible by 8)."""


def dct_matrix(dtype: np.dtype | type = np.float64) -> np.ndarray:
    """D: [8, 8] orthonormal DCT-II matrix, `D[u, x] = c(u) cos((2x+1)uπ/16)`; `D @ D.T == I`."""
    u = np.arange(8)[:, None]
    x = np.arange(8)[None, :]
    d = np.cos((2 * x + 1) * u * math.pi / 16) * np.where(u == 0, math.sqrt(1 / 8), math.sqrt(2 / 8))
    return d.astype(dtype)


def dct_basis(dtype: np.dtype | type = np.float64) -> np.ndarray:
    """B: [64, 8, 8] basis images, `B[8u+v, x, y] = D[u, x] D[v, y]`; coefficient k = <block, B[k]>."""
    d = dct_matrix(np.float64)
    return np.einsum("ux,vy->uvxy", d, d).reshape(64, 8, 8).astype(dtype)


# Float64 master copy; torch/numpy copies in the caller's dtype are made per call (8x8, negligible).
_D64 = dct_matrix(np.float64)


def _matrix_like(x: Array) -> Array:
    if is_tensor(x):
        import torch

        dtype = x.dtype if x.is_floating_point() else torch.float32
        return torch.as_tensor(_D64, dtype=dtype, device=x.device)
    dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
    return _D64.astype(dtype)


def _as_float(x: Array) -> Array:
    if is_tensor(x):
        import torch

        return x if x.is_floating_point() else x.to(torch.float32)
    return x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float64)


def _einsum(spec: str, *ops: Array) -> Array:
    if is_tensor(ops[-1]):
        import torch

        return torch.einsum(spec, *ops)
    return np.einsum(spec, *ops, optimize=True)


def block_dct(pixels: Array) -> Array:
    """Forward 8x8 block DCT of planes whose sides are multiples of 8.

    Args:
        pixels: [..., H, W] float (numpy or torch; integers are promoted to float64 / float32), already
            level-shifted by the caller if JPEG coefficients are wanted (subtract 128).

    Returns:
        [..., 64, H/8, W/8], same kind, device and float dtype; channel k = 8*u + v.

    Raises:
        BlockGridError: H or W is not a multiple of 8.
    """
    h, w = int(pixels.shape[-2]), int(pixels.shape[-1])
    if h % 8 or w % 8:
        raise BlockGridError(
            f"block_dct needs planes whose sides are multiples of 8, got {h}x{w}; pad the image first"
        )
    x = _as_float(pixels)
    d = _matrix_like(x)
    lead = tuple(x.shape[:-2])
    blocks = x.reshape(*lead, h // 8, 8, w // 8, 8)
    out = _einsum("ux,vy,...ixjy->...uvij", d, d, blocks)
    return out.reshape(*lead, 64, h // 8, w // 8)


def block_idct(coefs: Array) -> Array:
    """Inverse of `block_dct`: [..., 64, Hb, Wb] -> [..., 8*Hb, 8*Wb] float (level shift not added).

    Raises:
        BlockGridError: the channel axis (-3) is not 64 long.
    """
    if coefs.ndim < 3 or int(coefs.shape[-3]) != 64:
        raise BlockGridError(
            f"block_idct needs [..., 64, Hb, Wb] coefficients, got shape {tuple(coefs.shape)}"
        )
    x = _as_float(coefs)
    d = _matrix_like(x)
    lead = tuple(x.shape[:-3])
    hb, wb = int(x.shape[-2]), int(x.shape[-1])
    blocks = x.reshape(*lead, 8, 8, hb, wb)
    out = _einsum("ux,vy,...uvij->...ixjy", d, d, blocks)
    return out.reshape(*lead, 8 * hb, 8 * wb)


def _stack_for(x: Array):
    if is_tensor(x):
        import torch

        return torch.stack
    return np.stack


def rgb_to_ycbcr(rgb: Array) -> Array:
    """JFIF full-range RGB -> YCbCr on the channel axis -3: [..., 3, H, W] float in 0..255, same kind."""
    x = _as_float(rgb)
    r, g, b = x[..., 0, :, :], x[..., 1, :, :], x[..., 2, :, :]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168735892 * r - 0.331264108 * g + 0.5 * b + 128.0
    cr = 0.5 * r - 0.418687589 * g - 0.081312411 * b + 128.0
    stack = _stack_for(x)
    return stack([y, cb, cr], -3)


def ycbcr_to_rgb(ycc: Array) -> Array:
    """JFIF full-range YCbCr -> RGB on the channel axis -3: [..., 3, H, W] float, no rounding or clipping."""
    x = _as_float(ycc)
    y, cb, cr = x[..., 0, :, :], x[..., 1, :, :] - 128.0, x[..., 2, :, :] - 128.0
    r = y + 1.402 * cr
    g = y - 0.344136286 * cb - 0.714136286 * cr
    b = y + 1.772 * cb
    stack = _stack_for(x)
    return stack([r, g, b], -3)


def rgb_to_coefficients(rgb: Array) -> tuple[Array, Array]:
    """Unquantized 4:2:0 coefficients of RGB images: the differentiable forward path of a JPEG encoder.

    Colour conversion (JFIF), level shift by 128, chroma subsampled by averaging each 2x2 pixel group (what
    libjpeg's encoder does), then `block_dct`. Divide by `qt` and round to get quantized coefficients.

    Args:
        rgb: [..., 3, H, W] float in 0..255, H and W multiples of 16.

    Returns:
        y: [..., 64, H/8, W/8] and cbcr: [..., 128, H/16, W/16] (Cb's 64 then Cr's 64), float.

    Raises:
        BlockGridError: H or W is not a multiple of 16, or the channel axis is not 3 long.
    """
    if rgb.ndim < 3 or int(rgb.shape[-3]) != 3 or int(rgb.shape[-2]) % 16 or int(rgb.shape[-1]) % 16:
        raise BlockGridError(
            f"rgb_to_coefficients needs [..., 3, H, W] with H, W multiples of 16, got {tuple(rgb.shape)}"
        )
    h, w = int(rgb.shape[-2]), int(rgb.shape[-1])
    ycc = rgb_to_ycbcr(rgb) - 128.0
    y = block_dct(ycc[..., 0, :, :])
    chroma = ycc[..., 1:, :, :]
    lead = tuple(chroma.shape[:-2])
    chroma = chroma.reshape(*lead, h // 2, 2, w // 2, 2).mean(axis=(-3, -1))
    c = block_dct(chroma)  # [..., 2, 64, H/16, W/16]
    return y, c.reshape(*lead[:-1], 128, h // 16, w // 16)
