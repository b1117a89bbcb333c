"""What a JPEG file holds, as the coefficient reader sees it: size, layout, quant tables, quality,
and how many coefficients are non-zero per frequency (what `dctq inspect` shows)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .coefficients import JpegCoefficients
from .quality import estimate_ijg_quality
from .reader import read_jpeg

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class InspectReport:
    """One JPEG file, summarised.

    Attributes:
        path: the file, as given.
        file_size: size of the file in bytes.
        width, height: pixel size stored in the file.
        subsampling: the file's own layout ("4:2:0", "4:2:2", "4:4:0", "4:4:4" or "gray").
        progressive: whether the file is progressive.
        block_grid: (Hb, Wb), the luma block grid after mapping onto 4:2:0 (even, MCU-padded).
        qtables: [3][8][8] quant tables (Y, Cb, Cr) in natural order; grayscale files repeat Y.
        quality: best-fitting IJG quality 1..100, or None when the tables are not libjpeg's.
        quality_fit_error: mean relative deviation from that IJG table (0.0 = exact).
        nonzero_share: per component ("y", "cb", "cr"), 64 shares in natural order (k = 8*u + v) of
            the blocks covering the image whose coefficient k is non-zero; cb/cr are None for gray.
        nonzero_overall: per component, the share of all its coefficients that are non-zero.
    """

    path: str
    file_size: int
    width: int
    height: int
    subsampling: str
    progressive: bool
    block_grid: tuple[int, int]
    qtables: list[list[list[int]]]
    quality: int | None
    quality_fit_error: float
    nonzero_share: dict[str, list[float] | None]
    nonzero_overall: dict[str, float | None]


def _nonzero_shares(coefs: np.ndarray, rows: int, cols: int) -> list[float]:
    """coefs: [64, H, W] integers -> 64 shares over the top-left rows x cols blocks.

    Only blocks covering the image count: the MCU padding beyond it holds encoder filler
    (repeated DC, zero AC) that would dilute the statistics of small images.
    """
    covered = coefs[:, :rows, :cols]
    return [float(v) for v in np.count_nonzero(covered.reshape(64, -1), axis=1) / max(1, rows * cols)]


def _blocks(pixels: int, block: int) -> int:
    return -(-pixels // block)


def report_from_coefficients(coef: JpegCoefficients, path: str, file_size: int) -> InspectReport:
    """Build the InspectReport of coefficients already read (see inspect_jpeg)."""
    qt = np.asarray(coef.qt, dtype=np.int64)  # [3, 64]
    quality, fit_error = estimate_ijg_quality(qt[0], None if coef.is_gray else qt[1])

    shares: dict[str, list[float] | None] = {
        "y": _nonzero_shares(coef.y, _blocks(coef.height, 8), _blocks(coef.width, 8))
    }
    if coef.cbcr is None:
        shares["cb"] = shares["cr"] = None
    else:
        # On the 4:2:0 grid one chroma block covers 16x16 pixels.
        rows, cols = _blocks(coef.height, 16), _blocks(coef.width, 16)
        shares["cb"] = _nonzero_shares(coef.cbcr[:64], rows, cols)
        shares["cr"] = _nonzero_shares(coef.cbcr[64:], rows, cols)
    overall = {k: (None if v is None else float(np.mean(v))) for k, v in shares.items()}

    return InspectReport(
        path=path,
        file_size=int(file_size),
        width=int(coef.width),
        height=int(coef.height),
        subsampling=coef.subsampling,
        progressive=bool(coef.progressive),
        block_grid=coef.block_grid,
        qtables=qt.reshape(3, 8, 8).tolist(),
        quality=quality,
        quality_fit_error=fit_error,
        nonzero_share=shares,
        nonzero_overall=overall,
    )


def inspect_jpeg(path: str | Path, *, backend: str = "auto") -> InspectReport:
    """Read `path` and summarise it (see InspectReport).

    Args:
        path: a JPEG file.
        backend: coefficient reader backend, passed to read_jpeg ("auto" picks the fastest available).

    Raises:
        JpegError: the file is missing or unreadable, or the backend is not available here;
            NotAJpegError, CorruptJpegError or UnsupportedJpegError (all JpegError) for what it holds.
        ValueError: an unknown backend name.
    """
    path = Path(path)
    coef = read_jpeg(path, backend=backend)
    file_size = path.stat().st_size
    logger.debug("inspected %s (%d bytes)", path, file_size)
    return report_from_coefficients(coef, str(path), file_size)
