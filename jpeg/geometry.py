"""Block-grid geometry in the DCT domain: crop, pad and flip coefficient tensors without decoding.

Everything works on numpy arrays and torch tensors alike, `y: [..., 64, Hb, Wb]` and
`cbcr: [..., 128, Hb/2, Wb/2]` (a leading batch axis is allowed; cbcr may be None for grayscale), and moves
whole MCUs (2x2 luma blocks = 16x16 pixels) so luma and chroma stay aligned. Padding adds zero blocks,
which decode to flat mid-grey (128) pixels. Batched inputs get one crop offset for the whole batch.
Results are new arrays (torch results stay differentiable), except that a crop/pad to the input's own grid
returns the input itself.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from .dct import BlockGridError, is_tensor

if TYPE_CHECKING:
    import torch

# torch is never imported here: tensor inputs bring it (see dct.is_tensor).
Array = TypeVar("Array", np.ndarray, "torch.Tensor")


def block_grid(size: tuple[int, int]) -> tuple[int, int]:
    """Luma block grid (Hb, Wb) of an H x W pixel image on whole 4:2:0 MCUs: 2*ceil(H/16) x 2*ceil(W/16)."""
    return (2 * math.ceil(size[0] / 16), 2 * math.ceil(size[1] / 16))


def _zeros(x: Array, shape: tuple[int, ...]) -> Array:
    if is_tensor(x):
        return x.new_zeros(shape)
    return np.zeros(shape, dtype=x.dtype)


def _place(x: Array, rows: int, cols: int, top: int, left: int) -> Array:
    """Window of `x` ([..., r, c]) of size rows x cols whose top-left corner sits at (top, left) of x.

    Negative offsets or windows past the edge pad with zeros.
    """
    r, c = int(x.shape[-2]), int(x.shape[-1])
    if top == 0 and left == 0 and (r, c) == (rows, cols):
        return x
    out = _zeros(x, (*tuple(x.shape[:-2]), rows, cols))
    src_r0, src_c0 = max(top, 0), max(left, 0)
    src_r1, src_c1 = min(top + rows, r), min(left + cols, c)
    if src_r1 > src_r0 and src_c1 > src_c0:
        out[..., src_r0 - top : src_r1 - top, src_c0 - left : src_c1 - left] = x[
            ..., src_r0:src_r1, src_c0:src_c1
        ]
    return out


def fit_block_grid(x: Array, rows: int, cols: int) -> Array:
    """Crop or zero-pad `x` ([..., rows_in, cols_in]) at the bottom/right to [..., rows, cols]."""
    return _place(x, rows, cols, 0, 0)


def _check_grid(y: Array, cbcr: Array | None) -> tuple[int, int]:
    if y.ndim < 3 or int(y.shape[-3]) != 64:
        raise BlockGridError(f"expected luma coefficients [..., 64, Hb, Wb], got shape {tuple(y.shape)}")
    hb, wb = int(y.shape[-2]), int(y.shape[-1])
    if hb % 2 or wb % 2:
        raise BlockGridError(
            f"luma block grid {hb}x{wb} is not a whole number of MCUs; call pad_to_mcu first"
        )
    if cbcr is not None:
        want = (128, hb // 2, wb // 2)
        if cbcr.ndim < 3 or tuple(int(s) for s in cbcr.shape[-3:]) != want:
            raise BlockGridError(
                f"chroma shape {tuple(cbcr.shape)} does not match luma grid {hb}x{wb}: expected [..., {want[0]}, "
                f"{want[1]}, {want[2]}]"
            )
    return hb, wb


def _check_out(out_hb: int, out_wb: int) -> None:
    if out_hb <= 0 or out_wb <= 0 or out_hb % 2 or out_wb % 2:
        raise BlockGridError(
            f"output luma grid must be positive and even (whole 16-px MCUs), got {out_hb}x{out_wb} blocks; "
            "for an image of H x W pixels use 2*ceil(H/16) x 2*ceil(W/16)"
        )


def _crop_at(
    y: Array, cbcr: Array | None, out_hb: int, out_wb: int, top_mcu: int, left_mcu: int
) -> tuple[Array, Array | None]:
    y_out = _place(y, out_hb, out_wb, 2 * top_mcu, 2 * left_mcu)
    c_out = None if cbcr is None else _place(cbcr, out_hb // 2, out_wb // 2, top_mcu, left_mcu)
    return y_out, c_out


def pad_to_mcu(y: Array, cbcr: Array | None = None) -> tuple[Array, Array | None]:
    """Zero-pad the luma grid at the bottom/right to even block counts and fit chroma to half of it.

    Args:
        y: [..., 64, Hb, Wb]; cbcr: [..., 128, r, c] with r, c <= ceil(Hb/2), ceil(Wb/2), or None.

    Returns:
        y: [..., 64, 2*ceil(Hb/2), 2*ceil(Wb/2)], cbcr: [..., 128, ceil(Hb/2), ceil(Wb/2)] (or None).
    """
    if y.ndim < 3 or int(y.shape[-3]) != 64:
        raise BlockGridError(f"expected luma coefficients [..., 64, Hb, Wb], got shape {tuple(y.shape)}")
    hb, wb = int(y.shape[-2]), int(y.shape[-1])
    mh, mw = (hb + 1) // 2, (wb + 1) // 2
    y_out = fit_block_grid(y, 2 * mh, 2 * mw)
    c_out = None if cbcr is None else fit_block_grid(cbcr, mh, mw)
    return y_out, c_out


def center_crop_or_pad(y: Array, cbcr: Array | None, out_hb: int, out_wb: int) -> tuple[Array, Array | None]:
    """Centre crop (or zero-pad, per axis) to an `out_hb x out_wb` luma block grid on MCU boundaries.

    When the difference in MCUs is odd, the extra MCU is cropped from / padded at the bottom/right.

    Returns:
        y: [..., 64, out_hb, out_wb], cbcr: [..., 128, out_hb/2, out_wb/2] (or None), same kind and dtype.

    Raises:
        BlockGridError: odd or non-positive output sizes, odd input grid, chroma not matching luma.
    """
    hb, wb = _check_grid(y, cbcr)
    top, left = center_offset(hb, wb, out_hb, out_wb)
    return _crop_at(y, cbcr, out_hb, out_wb, top, left)


def center_offset(hb: int, wb: int, out_hb: int, out_wb: int) -> tuple[int, int]:
    """(top, left) in MCUs of the `out_hb x out_wb` window `center_crop_or_pad` takes from an `hb x wb`
    luma grid (negative where it pads). The coefficient reader takes the same window straight from the file.

    Raises BlockGridError for odd or non-positive output sizes.
    """
    _check_out(out_hb, out_wb)
    top = (hb // 2 - out_hb // 2) // 2 if hb >= out_hb else -((out_hb // 2 - hb // 2) // 2)
    left = (wb // 2 - out_wb // 2) // 2 if wb >= out_wb else -((out_wb // 2 - wb // 2) // 2)
    return top, left


def random_block_crop(
    y: Array, cbcr: Array | None, out_hb: int, out_wb: int, rng: np.random.Generator
) -> tuple[Array, Array | None]:
    """Crop an `out_hb x out_wb` luma block grid at a random MCU-aligned offset drawn from `rng`.

    Axes shorter than the output are centre-padded with zero blocks instead.

    Raises:
        BlockGridError: as `center_crop_or_pad`.
    """
    _check_out(out_hb, out_wb)
    hb, wb = _check_grid(y, cbcr)
    top = int(rng.integers(0, (hb - out_hb) // 2 + 1)) if hb >= out_hb else -((out_hb // 2 - hb // 2) // 2)
    left = int(rng.integers(0, (wb - out_wb) // 2 + 1)) if wb >= out_wb else -((out_wb // 2 - wb // 2) // 2)
    return _crop_at(y, cbcr, out_hb, out_wb, top, left)


def _flip_signs(x: Array) -> Array:
    """[C, 1, 1] +1/-1: odd horizontal frequencies (k % 8 odd) change sign under a mirror."""
    channels = int(x.shape[-3])
    signs = np.where(np.arange(channels) % 8 % 2 == 1, -1, 1).reshape(channels, 1, 1)
    if is_tensor(x):
        import torch

        return torch.as_tensor(signs, dtype=x.dtype, device=x.device)
    return signs.astype(x.dtype)


def _hflip_one(x: Array) -> Array:
    flipped = x.flip(-1) if is_tensor(x) else x[..., ::-1]
    return flipped * _flip_signs(x)


def hflip(y: Array, cbcr: Array | None) -> tuple[Array, Array | None]:
    """Mirror left-right in the DCT domain: reverse the block order along width, negate odd v channels.

    Exactly the coefficients of the mirrored pixels when the image width is a multiple of 16; otherwise
    the right-hand padding moves to the left edge (the content shifts by the padding width).

    Returns:
        y, cbcr with the input's shapes, kind and dtype (new arrays).
    """
    _check_grid(y, cbcr)
    return _hflip_one(y), (None if cbcr is None else _hflip_one(cbcr))
