"""Bounds on what reading one JPEG may take: the bytes of its file, the pixels its header declares and
the scans it holds.

A 4 MB file can declare 16384 x 16384 pixels, which libjpeg then holds as 800 MB of coefficients (and
Pillow as 800 MB of RGB) before any crop to a 32-pixel model input; so every reader checks the header
against a pixel limit first. The limit a read uses: its `max_pixels` argument when given, else the
environment variable DCTQ_MAX_PIXELS (what `dctq --max-pixels N` sets, so DataLoader workers and torchrun
ranks see it too), else DEFAULT_MAX_PIXELS; 0 turns it off (MAX_COEFFICIENT_BYTES still bounds libjpeg).

A progressive file can also hold thousands of scans of a few bytes each, every one of which makes libjpeg
walk the whole coefficient buffer again (minutes of CPU for a file of a few MB): more than MAX_SCANS scans
are refused before decoding, as libjpeg-turbo advises (its djpeg -maxscans, TurboJPEG's scan limit).
"""

from __future__ import annotations

import os

import numpy as np

from ..common.errors import ConfigError, UnsupportedJpegError
from .sniff import parse_header

DEFAULT_MAX_PIXELS = 100_000_000
"""100 megapixels: above every camera photo dctq is likely to meet (a 108 MP phone sensor is the exception;
raise the limit for it), far below what a forged header can declare (4 gigapixels)."""
MAX_PIXELS_ENV = "DCTQ_MAX_PIXELS"
MAX_FILE_BYTES = 1 << 30
"""Largest JPEG file read (1 GiB): far above what any image under the pixel limit compresses to; a bigger
file named *.jpg is something else (a disk image, a video) and is refused before it is read."""


MAX_SCANS = 500
"""Most scans a JPEG may hold: baseline files have 1 (3 when not interleaved), progressive ones about 10
(mozjpeg's optimised scripts a few dozen)."""


def check_scans(data: bytes, source: str) -> None:
    """Raise UnsupportedJpegError when `data` holds more than MAX_SCANS start-of-scan markers.

    Counting FF DA is exact inside entropy-coded data (a 0xFF there is always followed by 0x00 or a
    restart marker); only metadata bytes could add to the count, never hide a scan.
    """
    # numpy, not bytes.count: CPython's two-byte search crawls over data full of 0xFF (0.3 ms for a 100 KB
    # photograph, as much as its 4:2:0 read took beyond the C call); this is ~0.03 ms.
    if len(data) <= 4096:
        scans = data.count(b"\xff\xda")  # numpy's fixed cost (~4 us) is more, for a CIFAR-sized file
    else:
        arr = np.frombuffer(data, dtype=np.uint8)
        before_da = np.flatnonzero(arr[1:] == 0xDA)  # i: arr[i + 1] is 0xDA
        scans = int(np.count_nonzero(arr[before_da] == 0xFF))
    if scans > MAX_SCANS:
        raise UnsupportedJpegError(
            f"{source}: {scans} scans, more than the {MAX_SCANS} any encoder writes; a file like this makes "
            "the decoder walk the whole image once per scan (a decompression bomb): re-encode it"
        )


def resolve_max_pixels(max_pixels: int | None = None) -> int | None:
    """The pixel limit a read uses (see the module docstring); None when there is none.

    Raises ConfigError for a negative limit or a DCTQ_MAX_PIXELS that is not a whole number.
    """
    if max_pixels is None:
        text = os.environ.get(MAX_PIXELS_ENV, "").strip()
        if not text:
            return DEFAULT_MAX_PIXELS
        try:
            max_pixels = int(text)
        except ValueError:
            raise ConfigError(
                f"{MAX_PIXELS_ENV}={text!r} is not a whole number of pixels; set it like 100000000, or 0 for no limit"
            ) from None
    if max_pixels < 0:
        raise ConfigError(f"the pixel limit (--max-pixels, {MAX_PIXELS_ENV}) must be >= 0, got {max_pixels}")
    return max_pixels or None


def check_pixels(width: int, height: int, source: str, max_pixels: int | None = None) -> None:
    """Raise UnsupportedJpegError naming `source` when width x height is above the pixel limit."""
    limit = resolve_max_pixels(max_pixels)
    if limit is not None and width * height > limit:
        raise UnsupportedJpegError(
            f"{source}: {width}x{height} pixels ({width * height / 1e6:.1f} MP) is more than the pixel limit of "
            f"{limit / 1e6:g} MP; downscale the file, or raise the limit with `dctq --max-pixels N` "
            f"({MAX_PIXELS_ENV}, max_pixels=; 0: none) if you trust it"
        )


def check_pixel_limit(data: bytes, source: str, max_pixels: int | None = None) -> None:
    """The header of the JPEG `data` checked against the pixel limit, before a full decoder (Pillow) sees it.

    Raises NotAJpegError / CorruptJpegError for a header that cannot be walked, UnsupportedJpegError
    above the limit.
    """
    header = parse_header(data, source)
    check_pixels(header.width, header.height, source, max_pixels)
