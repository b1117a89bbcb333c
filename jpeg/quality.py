"""Estimating the IJG (libjpeg) quality setting a JPEG was saved with, from its quant tables.

libjpeg, libjpeg-turbo, Pillow, OpenCV and most cameras' "quality" scale the two example tables of the
JPEG standard (ITU-T T.81 Annex K, tables K.1 and K.2) by `jpeg_quality_scaling`; this module rebuilds
those tables for every quality 1..100 and reports the closest one. Files from encoders with their own
tables (Photoshop, some phones, mozjpeg's defaults) fit none of them and get `None`. The same tables,
built for a chosen quality (`ijg_quant_table`, `ijg_qt`), give synthetic samples and QSAM's anchors
the `qt` a reader would give for a file saved at that quality.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..common.errors import DataError

if TYPE_CHECKING:
    from torch import Tensor

# ITU-T T.81 Annex K.1 (luminance) and K.2 (chrominance), natural row-major order (k = 8*u + v).
STD_LUMA_TABLE = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=np.int64,
).reshape(64)

STD_CHROMA_TABLE = np.array(
    [
        [17, 18, 24, 47, 99, 99, 99, 99],
        [18, 21, 26, 66, 99, 99, 99, 99],
        [24, 26, 56, 99, 99, 99, 99, 99],
        [47, 66, 99, 99, 99, 99, 99, 99],
        [99, 99, 99, 99, 99, 99, 99, 99],
        [99, 99, 99, 99, 99, 99, 99, 99],
        [99, 99, 99, 99, 99, 99, 99, 99],
        [99, 99, 99, 99, 99, 99, 99, 99],
    ],
    dtype=np.int64,
).reshape(64)

# Mean relative deviation from the best IJG table above which the tables are called "not IJG".
# Neighbouring qualities differ by ~2% at q=50 and rounding of small entries at q>90 adds a few
# percent, while tables designed independently (Photoshop, mozjpeg) sit 20% or more away.
MAX_IJG_FIT_ERROR = 0.10


def jpeg_quality_scaling(quality: int) -> int:
    """libjpeg's `jpeg_quality_scaling`: IJG quality 1..100 -> percentage scale of the standard tables.

    Out-of-range qualities are clamped to 1..100, as libjpeg does.
    """
    quality = min(max(int(quality), 1), 100)
    return 5000 // quality if quality < 50 else 200 - 2 * quality


def scaled_table(basic: np.ndarray, quality: int, *, force_baseline: bool = True) -> np.ndarray:
    """libjpeg's `jpeg_add_quant_table`: `basic` [64] scaled for `quality` -> [64] int64.

    Entries are rounded `(basic * scale + 50) // 100`, clamped to 1..32767, and to 1..255 when
    `force_baseline` (8-bit tables, what `jpeg_set_quality(..., TRUE)` and Pillow use).
    """
    scale = jpeg_quality_scaling(quality)
    table = (np.asarray(basic, dtype=np.int64) * scale + 50) // 100
    return np.clip(table, 1, 255 if force_baseline else 32767)


def ijg_quant_table(quality: int) -> np.ndarray:
    """libjpeg's tables for IJG `quality` (1..100, clamped), baseline (steps 1..255): [2, 64] uint16.

    Row 0 luma, row 1 chroma, natural order k = 8*u + v; what Pillow writes for `quality=`.
    """
    return np.stack([scaled_table(STD_LUMA_TABLE, quality), scaled_table(STD_CHROMA_TABLE, quality)]).astype(
        np.uint16
    )


def ijg_qt(qualities: Sequence[int]) -> Tensor:
    """qt [N, 3, 64] float32 (Y, Cb, Cr = Cb) for a list of IJG qualities, as a reader would give it.

    Raises:
        DataError: an empty list.
    """
    # torch is imported here, not at the top: the readers and `dctq inspect` stay free of it.
    import torch

    if len(qualities) == 0:
        raise DataError("ijg_qt needs at least one quality")
    # Rows (Y, Cb, Cr) = (luma, chroma, chroma), as recompress.ijg_quant_tables gives them.
    tables = np.stack([ijg_quant_table(q)[[0, 1, 1]] for q in qualities])
    return torch.from_numpy(tables.astype(np.float32))


def _candidate_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(qualities [M], luma [M, 64], chroma [M, 64]) for q = 1..100, baseline and, where it
    differs (q < 25), non-baseline scaling."""
    qualities, luma, chroma = [], [], []
    for force_baseline in (True, False):
        for q in range(1, 101):
            lt = scaled_table(STD_LUMA_TABLE, q, force_baseline=force_baseline)
            ct = scaled_table(STD_CHROMA_TABLE, q, force_baseline=force_baseline)
            if not force_baseline and lt.max() <= 255 and ct.max() <= 255:
                continue  # identical to the baseline table already listed
            qualities.append(q)
            luma.append(lt)
            chroma.append(ct)
    return np.array(qualities), np.stack(luma), np.stack(chroma)


_QUALITIES, _LUMA, _CHROMA = _candidate_tables()


def estimate_ijg_quality(qt_luma: np.ndarray, qt_chroma: np.ndarray | None) -> tuple[int | None, float]:
    """Best-fitting IJG quality for a file's quant tables.

    Args:
        qt_luma: [64] luma quant table in natural row-major order (any integer dtype; [8, 8] accepted).
        qt_chroma: [64] chroma quant table in the same order, or None for grayscale files.

    Returns:
        (quality, fit_error): quality in 1..100, or None when no IJG table is within
        MAX_IJG_FIT_ERROR; fit_error is the mean of |table - ijg_table| / ijg_table over the entries
        compared (0.0 = the file's tables are exactly libjpeg's at that quality).

    Raises:
        ValueError: a table does not hold 64 entries.
    """
    tables = [np.asarray(qt_luma, dtype=np.float64).reshape(-1)]
    refs = [_LUMA]
    if qt_chroma is not None:
        tables.append(np.asarray(qt_chroma, dtype=np.float64).reshape(-1))
        refs.append(_CHROMA)
    for t in tables:
        if t.shape != (64,):
            raise ValueError(f"a quant table holds 64 entries, got {t.size}")
    observed = np.concatenate(tables)  # [64 or 128]
    reference = np.concatenate(refs, axis=1).astype(np.float64)  # [M, 64 or 128]
    errors = np.mean(np.abs(observed[None, :] - reference) / reference, axis=1)
    best = int(np.argmin(errors))
    error = float(errors[best])
    if error > MAX_IJG_FIT_ERROR:
        return None, error
    return int(_QUALITIES[best]), error
