"""Read a JPEG file or byte string into the coefficient contract (JpegCoefficients).

Two backends produce identical arrays (decoders.py): "turbo", dctq.jpeg._turbo, a small C extension
over libjpeg-turbo, and "jpeglib", the jpeglib package, the reference and the fallback when the
extension is not built.

Either way the header is checked first (sniff.py) so that unsupported and malformed files get a precise
message, and a truncated or corrupt entropy-coded segment, which libjpeg zero-fills with only a warning,
is an error unless the caller opts in with allow_truncated=True.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from ..common.errors import CorruptJpegError, JpegError, UnsupportedJpegError
from ..common.files import FileTooLargeError, NotRegularFileError, read_regular_file
from .chroma import assemble_420
from .coefficients import JpegCoefficients
from .decoders import (
    DECODERS,
    JPEGLIB_MAX_SEGMENTS,
    MAX_COEFFICIENT_BYTES,
    Decoded,
    Window,
    available_backends,
    resolve_backend,
)
from .geometry import block_grid, center_crop_or_pad, center_offset
from .limits import MAX_FILE_BYTES, check_pixels, check_scans
from .sniff import JpegHeader, check_length, check_supported, coefficient_bytes, layout_of, parse_header

# available_backends is part of the reader's documented API (docs/jpeg-reader.md).
__all__ = ["MAX_COEFFICIENT_BYTES", "JpegBlocks", "available_backends", "read_blocks", "read_jpeg"]

logger = logging.getLogger(__name__)

# Sampling factors handed to assemble_420, normalised so the chroma factors are 1x1.
_NORMALISED = {
    "gray": [(1, 1)],
    "4:4:4": [(1, 1), (1, 1), (1, 1)],
    "4:2:2": [(2, 1), (1, 1), (1, 1)],
    "4:2:0": [(2, 2), (1, 1), (1, 1)],
}


@dataclasses.dataclass(frozen=True)
class JpegBlocks:
    """A JPEG's quantized blocks per component, as stored (before any chroma layout change).

    Attributes:
        components: per component [64, rows, cols] int16, rows/cols = the component's blocks inside the
            image (libjpeg's height_in_blocks/width_in_blocks; MCU padding blocks are dropped because
            they are encoder-chosen filler outside the image and jpeglib does not expose them).
        sampling: per component (h, v) sampling factors as declared in the file.
        qt: per component [64] uint16 quant table, natural order (k = 8*u + v).
        height, width: image size in pixels.
        progressive: whether the file is progressive.
        color_space: 'gray', 'ycbcr', 'rgb', 'cmyk', 'ycck' or 'unknown' as the decoder saw it.
        warnings: libjpeg's warnings (empty for a clean file; only reachable with allow_truncated=True).
        source: the path read, or "<bytes>".
    """

    components: tuple[np.ndarray, ...]
    sampling: tuple[tuple[int, int], ...]
    qt: tuple[np.ndarray, ...]
    height: int
    width: int
    progressive: bool
    color_space: str
    warnings: tuple[str, ...]
    source: str


def _load(source: str | Path | bytes | bytearray | memoryview) -> tuple[bytes, str, Path | None]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), "<bytes>", None
    path = Path(source)
    return read_jpeg_file(path), str(path), path


def read_jpeg_file(path: Path | str) -> bytes:
    """The bytes of the JPEG file at `path`: a regular file (links followed) of at most MAX_FILE_BYTES,
    so a FIFO named *.jpg, a link to /dev/zero or a huge file is refused before it is read.

    Raises JpegError naming the path (UnsupportedJpegError for a file above MAX_FILE_BYTES).
    """
    path = Path(path)
    try:
        return read_regular_file(path, max_bytes=MAX_FILE_BYTES)
    except FileNotFoundError:
        raise JpegError(f"{path}: no such file; check the path") from None
    except IsADirectoryError:
        raise JpegError(f"{path}: is a folder, not a file; give the path of a JPEG file") from None
    except PermissionError:
        raise JpegError(f"{path}: permission denied; check the file's permissions") from None
    except NotRegularFileError as exc:
        raise JpegError(f"{path}: {exc.strerror}; give a JPEG file") from None
    except FileTooLargeError as exc:
        raise UnsupportedJpegError(
            f"{path}: the file {exc.strerror}; no JPEG dctq reads is that large"
        ) from None
    except OSError as exc:
        raise JpegError(f"{path}: cannot be read ({exc.strerror or exc}); check the path") from None


def _check_header(
    data: bytes, source: str, backend: str, allow_truncated: bool, max_pixels: int | None
) -> JpegHeader:
    """Refuse, before any decoder runs, what the header walk finds unsupported, malformed or too large."""
    header = parse_header(data, source)
    check_supported(header, source)
    if backend == "jpeglib" and header.app_segments > JPEGLIB_MAX_SEGMENTS:
        raise UnsupportedJpegError(
            f"{source}: {header.app_segments} APP/COM segments, more than the jpeglib backend can hold "
            f"({JPEGLIB_MAX_SEGMENTS}); use backend='turbo' or strip the metadata (`jpegtran -copy none`)"
        )
    if not allow_truncated:
        check_length(header, len(data), source)
    check_pixels(header.width, header.height, source, max_pixels)
    check_scans(data, source)
    if coefficient_bytes(header) > MAX_COEFFICIENT_BYTES:
        raise UnsupportedJpegError(
            f"{source}: the header declares a {header.width}x{header.height} image, more than "
            f"{MAX_COEFFICIENT_BYTES >> 20} MiB of coefficients; check the file or downscale it"
        )
    return header


def _check_tables(tables: np.ndarray | None, source: str) -> None:
    if tables is None:
        raise CorruptJpegError(f"{source}: a component has no quantization table; the file is damaged")
    if np.count_nonzero(tables) != tables.size:
        # libjpeg takes a 0 step as given; it is invalid (T.81 B.2.4.1) and no dequantization can use it.
        raise CorruptJpegError(f"{source}: a quantization table holds a zero step; the file is damaged")


def _check_warnings(warnings: list[tuple[str, str]], source: str, allow_truncated: bool) -> None:
    """Data-bearing warnings are errors unless allow_truncated; accepted ones are logged."""
    bad = [(kind, msg) for kind, msg in warnings if kind != "benign"]
    if bad and not allow_truncated:
        truncated = any(kind == "truncated" for kind, _ in bad)
        what = "truncated" if truncated else "damaged"
        said = "; ".join(dict.fromkeys(msg for _, msg in bad))  # each message once, in order
        raise CorruptJpegError(
            f"{source}: the JPEG data is {what} (libjpeg: {said}); the missing "
            "blocks would be zero-filled: re-encode or drop the file, or pass allow_truncated=True to accept it"
        )
    for kind, msg in warnings:
        if kind == "benign":
            logger.debug("%s: %s", source, msg)
        else:
            logger.info("%s: accepted with allow_truncated=True: %s", source, msg)


def _check_decoded(color_space: str, sampling: tuple[tuple[int, int], ...], source: str) -> str:
    """The decoder's own view checked again; returns the layout name (see sniff.layout_of).

    The header check already refused these; a file the two read differently can never reach the models.
    """
    if color_space not in ("gray", "ycbcr") or (color_space == "gray") != (len(sampling) == 1):
        raise UnsupportedJpegError(
            f"{source}: the decoder reads it as {color_space} with {len(sampling)} components; "
            "only YCbCr colour and grayscale are supported"
        )
    layout = layout_of(sampling)
    if layout is None:
        raise UnsupportedJpegError(f"{source}: unsupported chroma sampling {sampling}")
    return layout


def _window(header: JpegHeader, fit_grid: tuple[int, int] | None) -> Window | None:
    """The luma window (top, left, rows, cols) a centre crop/pad to `fit_grid` keeps, for the frames whose
    blocks the turbo decoder can write straight into it (grayscale and 4:2:0); None for the others."""
    if fit_grid is None or layout_of(tuple((c.h, c.v) for c in header.components)) not in ("gray", "4:2:0"):
        return None
    hb, wb = block_grid((header.height, header.width))
    top, left = center_offset(hb, wb, *fit_grid)
    return (2 * top, 2 * left, *fit_grid)


def _read(
    source: str | Path | bytes,
    allow_truncated: bool,
    backend: str,
    grid: bool,
    max_pixels: int | None = None,
    fit_grid: tuple[int, int] | None = None,
) -> tuple[Decoded, str, str]:
    """Load, check the header, decode, check the result: (decoded, source name, layout name)."""
    asked = backend
    backend = resolve_backend(backend)
    data, source_name, path = _load(source)
    header = _check_header(data, source_name, backend, allow_truncated, max_pixels)
    out = DECODERS[backend](data, source_name, path, grid, _window(header, fit_grid))
    logger.debug("read %s with %s (asked %s): %d warnings", source_name, backend, asked, len(out.warnings))
    _check_tables(out.tables, source_name)
    _check_warnings(out.warnings, source_name, allow_truncated)
    return out, source_name, _check_decoded(out.color_space, out.sampling, source_name)


def read_blocks(
    source: str | Path | bytes,
    *,
    allow_truncated: bool = False,
    backend: str = "auto",
    max_pixels: int | None = None,
) -> JpegBlocks:
    """Read the quantized blocks of each component of a JPEG, as stored (see JpegBlocks).

    Raises the same errors as read_jpeg.
    """
    out, source_name, _ = _read(source, allow_truncated, backend, grid=False, max_pixels=max_pixels)
    return JpegBlocks(
        components=tuple(out.components),
        sampling=out.sampling,
        qt=tuple(out.tables),
        height=out.height,
        width=out.width,
        progressive=out.progressive,
        color_space=out.color_space,
        warnings=tuple(msg for _, msg in out.warnings),
        source=source_name,
    )


def read_jpeg(
    source: str | Path | bytes,
    *,
    allow_truncated: bool = False,
    backend: str = "auto",
    max_pixels: int | None = None,
    fit_grid: tuple[int, int] | None = None,
) -> JpegCoefficients:
    """Read a JPEG's quantized DCT coefficients onto the 4:2:0 grid.

    Args:
        source: a path, or the file's bytes.
        allow_truncated: accept files libjpeg reads only with data warnings (truncated, or corrupt
            entropy-coded data); the blocks it could not decode are zero. Also skips the header's
            size-versus-length check.
        backend: 'auto' (turbo when built, else jpeglib), 'turbo' or 'jpeglib'.
        max_pixels: refuse images whose header declares more pixels (before anything is decoded);
            None: $DCTQ_MAX_PIXELS, else limits.DEFAULT_MAX_PIXELS (100 MP); 0: no limit.
        fit_grid: centre-crop or zero-pad the planes to this luma block grid (Hb, Wb), on MCU boundaries,
            exactly as geometry.center_crop_or_pad does; the turbo backend then writes only the blocks the
            crop keeps for grayscale and 4:2:0 files (libjpeg still decodes the whole image).

    Returns:
        JpegCoefficients: y [64, Hb, Wb] int16, cbcr [128, Hb/2, Wb/2] int16 or None (grayscale),
        qt [3, 64] uint16, with Hb = 2*ceil(H/16), Wb = 2*ceil(W/16) (or `fit_grid`).

    Raises:
        JpegError: missing file, folder, unreadable file, or backend not available.
        NotAJpegError: empty input, or not a JPEG (PNG, text, ...).
        CorruptJpegError: truncated or damaged data (unless allow_truncated=True), bad header.
        UnsupportedJpegError: CMYK/YCCK/RGB-coded, 12-bit, arithmetic-coded, lossless/hierarchical,
            sampling other than 4:2:0, 4:2:2, 4:4:4, grayscale; more pixels than the limit.
        BlockGridError: a `fit_grid` that is not positive and even.
        ValueError: an unknown backend name (a programming error, not a file problem).
    """
    out, source_name, layout = _read(source, allow_truncated, backend, True, max_pixels, fit_grid)
    if out.windowed:
        y, cbcr = (out.components[0], None) if layout == "gray" else out.components
    elif out.on_grid and (layout == "gray" or len(out.components) == 2):
        # The hot path of every data loader: the extension's buffers are the contract's arrays (4:4:4 and
        # 4:2:2 chroma mapped onto the 4:2:0 grid in C, as chroma.assemble_420 maps it).
        y, cbcr = out.components if layout != "gray" else (out.components[0], None)
    else:
        y, cbcr = assemble_420(out.components, _NORMALISED[layout], list(out.tables), out.height, out.width)
    if fit_grid is not None and not out.windowed:
        y, cbcr = center_crop_or_pad(y, cbcr, *fit_grid)
    qt = out.tables if len(out.tables) == 3 else np.repeat(out.tables, 3, axis=0)
    return JpegCoefficients(y, cbcr, qt, out.height, out.width, layout, out.progressive, source_name)
