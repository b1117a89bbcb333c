"""The coefficient contract: what every reader returns and every model reads.

A JPEG becomes `y: [64, Hb, Wb]` luma coefficients and `cbcr: [128, Hb/2, Wb/2]` chroma coefficients
(Cb's 64 then Cr's 64) on the 4:2:0 grid, quantized integers held as int16, channel `k = 8*u + v`
(u = vertical frequency, v = horizontal; row-major inside the 8x8 block, not zig-zag), plus
`qt: [3, 64]` quant tables (Y, Cb, Cr) in the same order. Hb and Wb are always even: the luma grid is
the whole MCU grid of a 4:2:0 image (16 px), so the chroma grid is exactly half of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Sampling layouts a file can arrive in; everything is brought onto the 4:2:0 grid.
SUBSAMPLINGS = ("4:2:0", "4:2:2", "4:4:0", "4:4:4", "gray")


@dataclass(frozen=True)
class JpegCoefficients:
    """Quantized DCT coefficients of one JPEG, on the 4:2:0 grid.

    Attributes:
        y: [64, Hb, Wb] int16, luma coefficients (quantized integers).
        cbcr: [128, Hb/2, Wb/2] int16, Cb's 64 channels then Cr's 64; None for grayscale files.
        qt: [3, 64] uint16 quant tables (Y, Cb, Cr), natural row-major order. For grayscale files
            rows 1 and 2 repeat the luma table so that shapes stay fixed.
        height, width: pixel size of the image as stored in the file (before MCU padding).
        subsampling: the file's own layout, one of SUBSAMPLINGS (cbcr is 4:2:0 regardless).
        progressive: whether the file was progressive.
        source: the path read, or "<bytes>".
    """

    y: np.ndarray
    cbcr: np.ndarray | None
    qt: np.ndarray
    height: int
    width: int
    subsampling: str
    progressive: bool
    source: str = "<bytes>"

    @property
    def is_gray(self) -> bool:
        return self.cbcr is None

    @property
    def block_grid(self) -> tuple[int, int]:
        """(Hb, Wb): the luma block grid."""
        return int(self.y.shape[1]), int(self.y.shape[2])
