"""JPEG re-compression at an IJG quality, and QSAM's quality protocol.

QSAM (METHODS.md section 1) trains on JPEG versions of each image at a quality drawn per sample
(base qualities 90/60/30/10) and tests at one fixed quality per run. Re-compression goes through
Pillow (decode to pixels, re-encode at `quality`, 4:2:0 by default), as the authors' code does, so
the quant tables written are Pillow's IJG tables at that quality.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..common.errors import CorruptJpegError, DctqError, JpegError, NotAJpegError
from .quality import ijg_quant_table
from .reader import read_blocks

# QSAM's qualities [C]: base (and meta-train), held-out meta-test, and the 18 evaluation anchors.
QSAM_BASE_QUALITIES = (90, 60, 30, 10)
QSAM_META_TEST_QUALITIES = (80, 70, 50, 40, 20)
QSAM_EVAL_QUALITIES = tuple(range(95, 5, -5))

# Pillow's `subsampling` codes.
_SUBSAMPLING_CODES = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}


def check_quality(quality: int, what: str = "quality") -> int:
    """Return `quality` as an int if it is an IJG quality 1..100; raise DctqError otherwise."""
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 1 <= quality <= 100:
        raise DctqError(f"{what} must be an integer JPEG quality in 1..100, got {quality!r}")
    return int(quality)


def check_readable(jpeg: bytes) -> None:
    """Raise what the coefficient reader raises for `jpeg` (read_blocks: header checks, entropy decode,
    warnings as errors), with the message naming no source (callers add the file's path).

    Pillow decodes what the reader refuses: CMYK (converted to RGB), arithmetic-coded and 4:1:1 files,
    and damaged data (libjpeg zero-fills it with only a warning). Re-compressing or augmenting such a
    file would turn it into a clean JPEG the reader accepts, so the data pipeline would train on images
    `predict` and evaluation refuse.
    """
    try:
        read_blocks(jpeg)
    except JpegError as exc:
        message = str(exc)
        raise type(exc)(message.removeprefix("<bytes>: ")) from None


def recompress(jpeg: bytes, quality: int, subsampling: str = "4:2:0") -> bytes:
    """Decode `jpeg` with Pillow and re-encode it at IJG `quality`.

    Args:
        jpeg: the bytes of a JPEG file (baseline or progressive; gray stays gray).
        quality: IJG quality 1..100 (Pillow's `quality=`).
        subsampling: chroma layout of the output, "4:2:0" (QSAM's, the default), "4:2:2" or "4:4:4".

    Returns:
        The bytes of the new baseline JPEG.

    Raises:
        DctqError: bad quality or subsampling.
        NotAJpegError: the bytes are not a JPEG.
        CorruptJpegError / UnsupportedJpegError: what the coefficient reader refuses (check_readable:
            truncated or damaged data, CMYK, arithmetic coding, 4:1:1...), or Pillow cannot decode them.
    """
    quality = check_quality(quality)
    if subsampling not in _SUBSAMPLING_CODES:
        raise DctqError(f"subsampling must be one of {sorted(_SUBSAMPLING_CODES)}, got {subsampling!r}")
    if not jpeg.startswith(b"\xff\xd8"):
        raise NotAJpegError(f"cannot re-compress: input does not start with a JPEG SOI marker ({jpeg[:4]!r})")
    check_readable(jpeg)
    try:
        with Image.open(io.BytesIO(jpeg)) as img:
            img.load()
            if img.mode not in ("L", "RGB"):
                img = img.convert("RGB")
            out = io.BytesIO()
            kwargs = {"quality": quality}
            if img.mode != "L":
                kwargs["subsampling"] = _SUBSAMPLING_CODES[subsampling]
            img.save(out, format="JPEG", **kwargs)
    except (OSError, ValueError, SyntaxError) as exc:  # Pillow's decode errors
        raise CorruptJpegError(f"cannot re-compress: Pillow failed to decode the JPEG ({exc})") from exc
    return out.getvalue()


def ijg_quant_tables(quality: int) -> np.ndarray:
    """The quant tables libjpeg (and so Pillow, and `recompress`) writes at IJG `quality`: quality's
    `ijg_quant_table` with the chroma row repeated, after the range check `recompress` makes.

    Returns:
        qt: [3, 64] uint16 (Y, Cb, Cr), natural row-major order (Cb and Cr share the chroma table).

    Raises:
        DctqError: `quality` is not an integer in 1..100 (ijg_quant_table alone would clamp it).
    """
    return ijg_quant_table(check_quality(quality))[[0, 1, 1]]


@dataclass(frozen=True)
class QualityPolicy:
    """Which JPEG quality each sample is re-compressed to (QSAM's protocol).

    Attributes:
        train_qualities: qualities drawn uniformly per sample while training (QSAM:
            QSAM_BASE_QUALITIES); None keeps training files as they are.
        test_quality: the one quality every evaluation sample is re-compressed to; None keeps
            evaluation files as they are.

    Raises:
        DctqError: on construction, for an empty list or a quality outside 1..100.
    """

    train_qualities: tuple[int, ...] | None = None
    test_quality: int | None = None

    def __post_init__(self) -> None:
        if self.train_qualities is not None:
            if isinstance(self.train_qualities, (int, np.integer)):
                raise DctqError("train_qualities must be a sequence of qualities, e.g. (90, 60, 30, 10)")
            qualities = tuple(check_quality(q, "train_qualities entry") for q in self.train_qualities)
            if not qualities:
                raise DctqError("train_qualities is empty: give at least one quality, or None to keep files")
            object.__setattr__(self, "train_qualities", qualities)
        if self.test_quality is not None:
            object.__setattr__(self, "test_quality", check_quality(self.test_quality, "test_quality"))

    def pick(self, train: bool, rng: np.random.Generator) -> int | None:
        """The quality for one sample (None: keep the file); draws from `rng` only when training."""
        if not train:
            return self.test_quality
        if self.train_qualities is None:
            return None
        return self.train_qualities[int(rng.integers(len(self.train_qualities)))]
