"""Read a JPEG file or byte string into the coefficient contract (JpegCoefficients).

Two backends produce identical arrays:

- "turbo": dctq.jpeg._turbo, a small C extension over libjpeg-turbo's jpeg_read_coefficients reading
  from memory with the GIL released; libjpeg errors come back as exceptions, its warnings as a list.
- "jpeglib": the jpeglib package, the reference and the fallback when the extension is not built. It
  reads only from paths (bytes go through a temporary file), prints libjpeg's warnings on the C stderr
  (captured here at the file-descriptor level) and keeps global state in C, so calls are serialised.

Either way the header is checked first (sniff.py) so that unsupported and malformed files get a precise
message, and a truncated or corrupt entropy-coded segment, which libjpeg zero-fills with only a warning,
is an error unless the caller opts in with allow_truncated=True.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..common.errors import CorruptJpegError, JpegError, NotAJpegError, UnsupportedJpegError
from .chroma import assemble_420
from .coefficients import JpegCoefficients
from .sniff import check_length, check_supported, coefficient_bytes, layout_of, parse_header

try:
    from . import _turbo
except ImportError:  # not built (no libjpeg headers): the jpeglib backend reads instead
    _turbo = None

logger = logging.getLogger(__name__)

# Upper bound on what libjpeg may allocate for one image's coefficient arrays (about 1.3 gigapixels
# at 4:2:0); reached only by files whose header declares a huge image and allow_truncated=True.
MAX_COEFFICIENT_BYTES = 2 << 30
BACKENDS = ("turbo", "jpeglib")
# libjpeg's J_COLOR_SPACE values (jpeglib.h).
_JCS_NAMES = {0: "unknown", 1: "gray", 2: "rgb", 3: "ycbcr", 4: "cmyk", 5: "ycck"}
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


class _Decoded(NamedTuple):
    """What a backend gives for validated bytes, before any check of it."""

    components: list[np.ndarray]  # per component [64, rows, cols] int16, the blocks inside the image
    sampling: tuple[tuple[int, int], ...]  # per component (h, v)
    tables: np.ndarray | None  # [components, 64] uint16, None when a component has no table
    height: int
    width: int
    progressive: bool
    color_space: str
    warnings: list[tuple[str, str]]  # (kind, message), kind 'truncated', 'corrupt' or 'benign'
    # components[0] is on the contract's luma grid and, for 4:2:0, components[1] is cbcr [128, Hb/2, Wb/2]
    on_grid: bool = False


def available_backends() -> list[str]:
    """Backends usable here, fastest first: 'turbo' when the C extension is built, then 'jpeglib'."""
    names = []
    if _turbo is not None:
        names.append("turbo")
    try:
        import jpeglib  # noqa: F401
    except ImportError:
        pass
    else:
        names.append("jpeglib")
    return names


def _resolve_backend(backend: str) -> str:
    if _turbo is not None and backend in ("auto", "turbo"):
        return "turbo"  # what the general answer below gives, without looking for jpeglib on every read
    if backend not in ("auto", *BACKENDS):
        raise ValueError(f"unknown JPEG reader backend {backend!r}; use 'auto', 'turbo' or 'jpeglib'")
    available = available_backends()
    if backend == "auto":
        if not available:
            raise JpegError(
                "no JPEG reader available: build the dctq.jpeg._turbo extension or `pip install jpeglib`"
            )
        return available[0]
    if backend not in available:
        fix = (
            "install the libjpeg headers (Debian: libjpeg62-turbo-dev) and reinstall dctq "
            "(`pip install -e . --no-build-isolation`) to build dctq.jpeg._turbo"
            if backend == "turbo"
            else "`pip install jpeglib`"
        )
        raise JpegError(
            f"JPEG reader backend {backend!r} is not available here; {fix}, or use backend='auto'"
        )
    return backend


def _load(source: str | Path | bytes | bytearray | memoryview) -> tuple[bytes, str, Path | None]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), "<bytes>", None
    path = Path(source)
    try:
        return path.read_bytes(), str(path), path
    except FileNotFoundError:
        raise JpegError(f"{path}: no such file; check the path") from None
    except IsADirectoryError:
        raise JpegError(f"{path}: is a folder, not a file; give the path of a JPEG file") from None
    except PermissionError:
        raise JpegError(f"{path}: permission denied; check the file's permissions") from None
    except OSError as exc:
        raise JpegError(f"{path}: cannot be read ({exc.strerror or exc}); check the path") from None


def _check_header(data: bytes, source: str, backend: str, allow_truncated: bool) -> None:
    """Refuse, before any decoder runs, what the header walk finds unsupported, malformed or too large."""
    header = parse_header(data, source)
    check_supported(header, source)
    if backend == "jpeglib" and header.app_segments > _JPEGLIB_MAX_SEGMENTS:
        raise UnsupportedJpegError(
            f"{source}: {header.app_segments} APP/COM segments, more than the jpeglib backend can hold "
            f"({_JPEGLIB_MAX_SEGMENTS}); use backend='turbo' or strip the metadata (`jpegtran -copy none`)"
        )
    if not allow_truncated:
        check_length(header, len(data), source)
    if coefficient_bytes(header) > MAX_COEFFICIENT_BYTES:
        raise UnsupportedJpegError(
            f"{source}: the header declares a {header.width}x{header.height} image, more than "
            f"{MAX_COEFFICIENT_BYTES >> 20} MiB of coefficients; check the file or downscale it"
        )


def _decode_turbo(data: bytes, source: str, path: Path | None, grid: bool) -> _Decoded:
    """libjpeg-turbo's blocks; with `grid`, written by the extension straight onto the contract's grid."""
    try:
        out = _turbo.read_coefficients(data, MAX_COEFFICIENT_BYTES, grid)
    except _turbo.Error as exc:
        kind, message, warnings = exc.args
        raise _libjpeg_error(kind, message, source, warnings) from None
    height, width, progressive, _, space, _, sampling, qt, arrays, warnings = out
    comps = [np.frombuffer(buf, dtype=np.int16).reshape(c, r, w) for buf, c, r, w in arrays]
    tables = None if qt is None else np.frombuffer(qt, dtype=np.uint16).reshape(len(sampling), 64)
    space_name = _JCS_NAMES.get(space, "unknown")
    return _Decoded(comps, sampling, tables, height, width, progressive, space_name, warnings, grid)


def _check_tables(tables: np.ndarray | None, source: str) -> None:
    if tables is None:
        raise CorruptJpegError(f"{source}: a component has no quantization table; the file is damaged")
    if np.count_nonzero(tables) != tables.size:
        # libjpeg takes a 0 step as given; it is invalid (T.81 B.2.4.1) and no dequantization can use it.
        raise CorruptJpegError(f"{source}: a quantization table holds a zero step; the file is damaged")


def _libjpeg_error(kind: str, message: str, source: str, warnings: list[tuple[str, str]]) -> JpegError:
    """The JpegError for a libjpeg error of class `kind`, told by the warnings that came before it."""
    if any(k == "truncated" for k, _ in warnings):
        # Cut inside a segment header: libjpeg reads its fake EOI as parameters and gives up.
        return CorruptJpegError(
            f"{source}: the JPEG data is truncated (libjpeg: Premature end of JPEG file, then: {message}); "
            "re-encode or drop the file"
        )
    if kind == "not_jpeg":
        return NotAJpegError(f"{source}: not a JPEG file (libjpeg: {message}); give a JPEG file")
    if kind == "unsupported":
        return UnsupportedJpegError(f"{source}: libjpeg cannot read this JPEG ({message}); re-encode it")
    if kind == "too_large":
        return UnsupportedJpegError(
            f"{source}: the image is too large to read ({message}; limit {MAX_COEFFICIENT_BYTES >> 20} MiB of "
            "coefficients); check the file or downscale it"
        )
    return CorruptJpegError(
        f"{source}: the JPEG data is damaged (libjpeg: {message}); re-encode or drop the file"
    )


# jpeglib keeps C globals (marker buffers) and we redirect fd 2 around its calls: one call at a time.
_JPEGLIB_LOCK = threading.Lock()
# jpeglib's marker reader stores APPn/COM segments in a fixed array of 50 and overruns it beyond that.
_JPEGLIB_MAX_SEGMENTS = 49


@contextlib.contextmanager
def _captured_c_stderr() -> Iterator[list[str]]:
    """Collect what C code writes to file descriptor 2 meanwhile; yields a list filled on exit."""
    lines: list[str] = []
    with tempfile.TemporaryFile() as sink:
        saved = os.dup(2)
        try:
            os.dup2(sink.fileno(), 2)
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(line for line in sink.read().decode("utf-8", "replace").splitlines() if line.strip())


# libjpeg's warning texts (jerror.h, JWRN_*) by the class read_blocks gives them. Only these lines
# count as warnings: anything else that reaches fd 2 meanwhile (another thread's logging) is passed on.
_WARNING_PREFIXES = (
    ("Premature end of JPEG file", "truncated"),
    ("Corrupt JPEG data", "corrupt"),
    ("Invalid SOS parameters", "corrupt"),
    ("Inconsistent progression sequence", "corrupt"),
    ("Application transferred too many scanlines", "corrupt"),
    ("Warning: unknown JFIF revision", "benign"),
    ("Unknown Adobe color transform", "benign"),
)


def _classify_message(message: str) -> str | None:
    return next((kind for prefix, kind in _WARNING_PREFIXES if message.startswith(prefix)), None)


def _decode_jpeglib(data: bytes, source: str, path: Path | None, grid: bool) -> _Decoded:
    """The blocks as stored, whatever `grid` asks."""
    import jpeglib

    with _JPEGLIB_LOCK, contextlib.ExitStack() as stack:
        if path is None:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="dctq-jpeg-"))
            path = Path(tmp) / "input.jpg"
            path.write_bytes(data)
        try:
            with _captured_c_stderr() as lines:
                jpeg = jpeglib.read_dct(str(path))
                jpeg.load()
        except (OSError, RuntimeError, ValueError, MemoryError) as exc:
            # libjpeg printed its warnings, then the error message, before jpeglib raised.
            detail = lines[-1] if lines else str(exc)
            kind = "not_jpeg" if detail.startswith(("Not a JPEG file", "Empty input file")) else "corrupt"
            raise _libjpeg_error(kind, detail, source, _warnings_in(lines[:-1])) from None
    warnings = _warnings_in(lines)
    planes = [jpeg.Y, jpeg.Cb, jpeg.Cr] if jpeg.has_chrominance else [jpeg.Y]
    comps = [np.ascontiguousarray(p.reshape(p.shape[0], p.shape[1], 64).transpose(2, 0, 1)) for p in planes]
    # jpeglib gives samp_factor as (v, h) per component.
    sampling = [(int(s[1]), int(s[0])) for s in np.asarray(jpeg.samp_factor)[: len(planes)]]
    qts = np.asarray(jpeg.qt).reshape(-1, 64).astype(np.uint16)
    tables = [
        qts[int(i)].copy() if int(i) < len(qts) else None
        for i in np.asarray(jpeg.quant_tbl_no)[: len(planes)]
    ]
    space = {"JCS_GRAYSCALE": 1, "JCS_RGB": 2, "JCS_YCbCr": 3, "JCS_CMYK": 4, "JCS_YCCK": 5}
    color_space = _JCS_NAMES[space.get(getattr(jpeg.jpeg_color_space, "name", ""), 0)]
    stacked = None if any(t is None for t in tables) else np.stack(tables)
    return _Decoded(
        comps,
        tuple(sampling),
        stacked,
        int(jpeg.height),
        int(jpeg.width),
        bool(jpeg.progressive_mode),
        color_space,
        warnings,
    )


def _warnings_in(lines: list[str]) -> list[tuple[str, str]]:
    """libjpeg's warnings among captured stderr lines; the other lines go on to stderr as they came."""
    found, other = [], []
    for line in lines:
        kind = _classify_message(line)
        (other if kind is None else found).append(line if kind is None else (kind, line))
    if other:
        os.write(2, ("\n".join(other) + "\n").encode("utf-8", "replace"))
    return found


_DECODERS: dict[str, Callable[[bytes, str, Path | None, bool], _Decoded]] = {
    "turbo": _decode_turbo,
    "jpeglib": _decode_jpeglib,
}


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


def _read(
    source: str | Path | bytes, allow_truncated: bool, backend: str, grid: bool
) -> tuple[_Decoded, str, str]:
    """Load, check the header, decode, check the result: (decoded, source name, layout name)."""
    asked = backend
    backend = _resolve_backend(backend)
    data, source_name, path = _load(source)
    _check_header(data, source_name, backend, allow_truncated)
    out = _DECODERS[backend](data, source_name, path, grid)
    logger.debug("read %s with %s (asked %s): %d warnings", source_name, backend, asked, len(out.warnings))
    _check_tables(out.tables, source_name)
    _check_warnings(out.warnings, source_name, allow_truncated)
    return out, source_name, _check_decoded(out.color_space, out.sampling, source_name)


def read_blocks(
    source: str | Path | bytes, *, allow_truncated: bool = False, backend: str = "auto"
) -> JpegBlocks:
    """Read the quantized blocks of each component of a JPEG, as stored (see JpegBlocks).

    Raises the same errors as read_jpeg.
    """
    out, source_name, _ = _read(source, allow_truncated, backend, grid=False)
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
    source: str | Path | bytes, *, allow_truncated: bool = False, backend: str = "auto"
) -> JpegCoefficients:
    """Read a JPEG's quantized DCT coefficients onto the 4:2:0 grid.

    Args:
        source: a path, or the file's bytes.
        allow_truncated: accept files libjpeg reads only with data warnings (truncated, or corrupt
            entropy-coded data); the blocks it could not decode are zero. Also skips the header's
            size-versus-length check.
        backend: 'auto' (turbo when built, else jpeglib), 'turbo' or 'jpeglib'.

    Returns:
        JpegCoefficients: y [64, Hb, Wb] int16, cbcr [128, Hb/2, Wb/2] int16 or None (grayscale),
        qt [3, 64] uint16, with Hb = 2*ceil(H/16), Wb = 2*ceil(W/16).

    Raises:
        JpegError: missing file, folder, unreadable file, or backend not available.
        NotAJpegError: empty input, or not a JPEG (PNG, text, ...).
        CorruptJpegError: truncated or damaged data (unless allow_truncated=True), bad header.
        UnsupportedJpegError: CMYK/YCCK/RGB-coded, 12-bit, arithmetic-coded, lossless/hierarchical,
            sampling other than 4:2:0, 4:2:2, 4:4:4, grayscale.
        ValueError: an unknown backend name (a programming error, not a file problem).
    """
    out, source_name, layout = _read(source, allow_truncated, backend, grid=True)
    if out.on_grid and layout == "4:2:0":
        # The hot path of every data loader: the extension's buffers are the contract's arrays.
        y, cbcr = out.components
    else:
        y, cbcr = assemble_420(out.components, _NORMALISED[layout], list(out.tables), out.height, out.width)
    qt = out.tables if len(out.tables) == 3 else np.repeat(out.tables, 3, axis=0)
    return JpegCoefficients(y, cbcr, qt, out.height, out.width, layout, out.progressive, source_name)
