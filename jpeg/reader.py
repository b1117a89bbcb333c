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

import numpy as np

from ..common.errors import CorruptJpegError, JpegError, NotAJpegError, UnsupportedJpegError
from .chroma import assemble_420
from .coefficients import JpegCoefficients
from .sniff import check_length, check_supported, coefficient_bytes, layout_of, parse_header

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


# A backend decodes validated bytes: (data, source name, path or None) -> JpegBlocks with the
# warnings it met, each as (kind, message), kind 'truncated', 'corrupt' or 'benign'.
_Decoded = tuple[JpegBlocks, list[tuple[str, str]]]


def _turbo_module():
    try:
        from . import _turbo
    except ImportError:
        return None
    return _turbo


def available_backends() -> list[str]:
    """Backends usable here, fastest first: 'turbo' when the C extension is built, then 'jpeglib'."""
    names = []
    if _turbo_module() is not None:
        names.append("turbo")
    try:
        import jpeglib  # noqa: F401
    except ImportError:
        pass
    else:
        names.append("jpeglib")
    return names


def _resolve_backend(backend: str) -> str:
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


def _decode_turbo(data: bytes, source: str, path: Path | None) -> _Decoded:
    turbo = _turbo_module()
    try:
        out = turbo.read_coefficients(data, MAX_COEFFICIENT_BYTES)
    except turbo.Error as exc:
        kind, message, warnings = exc.args
        raise _libjpeg_error(kind, message, source, warnings) from None
    comps, sampling, tables = [], [], []
    for c in out["components"]:
        blocks = np.frombuffer(c["coefficients"], dtype=np.int16).reshape(64, c["rows"], c["cols"])
        comps.append(blocks[:, : c["height_in_blocks"], : c["width_in_blocks"]])
        sampling.append((c["h"], c["v"]))
        qt = c["qt"]
        tables.append(None if qt is None else np.frombuffer(qt, dtype=np.uint16).copy())
    return _blocks(out, comps, sampling, tables, source), list(out["warnings"])


def _blocks(out: dict, comps: list, sampling: list, tables: list, source: str) -> JpegBlocks:
    if any(t is None for t in tables):
        raise CorruptJpegError(f"{source}: a component has no quantization table; the file is damaged")
    if any(not t.all() for t in tables):
        # libjpeg takes a 0 step as given; it is invalid (T.81 B.2.4.1) and no dequantization can use it.
        raise CorruptJpegError(f"{source}: a quantization table holds a zero step; the file is damaged")
    return JpegBlocks(
        components=tuple(comps),
        sampling=tuple(sampling),
        qt=tuple(tables),
        height=int(out["height"]),
        width=int(out["width"]),
        progressive=bool(out["progressive"]),
        color_space=_JCS_NAMES.get(int(out["jpeg_color_space"]), "unknown"),
        warnings=(),
        source=source,
    )


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


def _decode_jpeglib(data: bytes, source: str, path: Path | None) -> _Decoded:
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
    out = {
        "height": jpeg.height,
        "width": jpeg.width,
        "progressive": jpeg.progressive_mode,
        "jpeg_color_space": space.get(getattr(jpeg.jpeg_color_space, "name", ""), 0),
    }
    return _blocks(out, comps, sampling, tables, source), warnings


def _warnings_in(lines: list[str]) -> list[tuple[str, str]]:
    """libjpeg's warnings among captured stderr lines; the other lines go on to stderr as they came."""
    found, other = [], []
    for line in lines:
        kind = _classify_message(line)
        (other if kind is None else found).append(line if kind is None else (kind, line))
    if other:
        os.write(2, ("\n".join(other) + "\n").encode("utf-8", "replace"))
    return found


_DECODERS: dict[str, Callable[[bytes, str, Path | None], _Decoded]] = {
    "turbo": _decode_turbo,
    "jpeglib": _decode_jpeglib,
}


def read_blocks(
    source: str | Path | bytes, *, allow_truncated: bool = False, backend: str = "auto"
) -> JpegBlocks:
    """Read the quantized blocks of each component of a JPEG, as stored (see JpegBlocks).

    Raises the same errors as read_jpeg.
    """
    asked = backend
    backend = _resolve_backend(backend)
    data, source_name, path = _load(source)
    header = parse_header(data, source_name)
    check_supported(header, source_name)
    if backend == "jpeglib" and header.app_segments > _JPEGLIB_MAX_SEGMENTS:
        raise UnsupportedJpegError(
            f"{source_name}: {header.app_segments} APP/COM segments, more than the jpeglib backend can hold "
            f"({_JPEGLIB_MAX_SEGMENTS}); use backend='turbo' or strip the metadata (`jpegtran -copy none`)"
        )
    if not allow_truncated:
        check_length(header, len(data), source_name)
    if coefficient_bytes(header) > MAX_COEFFICIENT_BYTES:
        raise UnsupportedJpegError(
            f"{source_name}: the header declares a {header.width}x{header.height} image, more than "
            f"{MAX_COEFFICIENT_BYTES >> 20} MiB of coefficients; check the file or downscale it"
        )
    blocks, warnings = _DECODERS[backend](data, source_name, path)
    logger.debug("read %s with %s (asked %s): %d warnings", source_name, backend, asked, len(warnings))
    bad = [(kind, msg) for kind, msg in warnings if kind != "benign"]
    if bad and not allow_truncated:
        truncated = any(kind == "truncated" for kind, _ in bad)
        what = "truncated" if truncated else "damaged"
        said = "; ".join(dict.fromkeys(msg for _, msg in bad))  # each message once, in order
        raise CorruptJpegError(
            f"{source_name}: the JPEG data is {what} (libjpeg: {said}); the missing "
            "blocks would be zero-filled: re-encode or drop the file, or pass allow_truncated=True to accept it"
        )
    for kind, msg in warnings:
        if kind == "benign":
            logger.debug("%s: %s", source_name, msg)
        else:
            logger.info("%s: accepted with allow_truncated=True: %s", source_name, msg)
    _check_decoded(blocks, source_name)
    return dataclasses.replace(blocks, warnings=tuple(msg for _, msg in warnings))


def _check_decoded(blocks: JpegBlocks, source: str) -> None:
    # The header check already refused these; the decoder's own view is checked again so that a file
    # the two read differently can never reach the models.
    if blocks.color_space not in ("gray", "ycbcr") or (blocks.color_space == "gray") != (
        len(blocks.components) == 1
    ):
        raise UnsupportedJpegError(
            f"{source}: the decoder reads it as {blocks.color_space} with {len(blocks.components)} components; "
            "only YCbCr colour and grayscale are supported"
        )
    if layout_of(blocks.sampling) is None:
        raise UnsupportedJpegError(f"{source}: unsupported chroma sampling {blocks.sampling}")


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
    blocks = read_blocks(source, allow_truncated=allow_truncated, backend=backend)
    layout = layout_of(blocks.sampling)
    y, cbcr = assemble_420(
        list(blocks.components), _NORMALISED[layout], list(blocks.qt), blocks.height, blocks.width
    )
    tables = blocks.qt if len(blocks.qt) == 3 else blocks.qt * 3
    return JpegCoefficients(
        y=y,
        cbcr=cbcr,
        qt=np.stack(tables).astype(np.uint16),
        height=blocks.height,
        width=blocks.width,
        subsampling=layout,
        progressive=blocks.progressive,
        source=blocks.source,
    )
