"""The decoders behind reader.py, which of them this installation has, and which one a read uses.

- "turbo": dctq.jpeg._turbo, a small C extension over libjpeg-turbo's jpeg_read_coefficients reading
  from memory with the GIL released; libjpeg errors come back as exceptions, its warnings as a list.
- "jpeglib": the jpeglib package, the reference and the fallback when the extension is not built. It
  reads only from paths (bytes go through a temporary file), prints libjpeg's warnings on the C stderr
  (captured here at the file-descriptor level) and keeps global state in C, so calls are serialised.

Both give a `Decoded` for bytes that passed reader.py's header check, and turn libjpeg's errors into
the JpegError subclasses; reader.py checks what they return.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..common.errors import CorruptJpegError, JpegError, NotAJpegError, UnsupportedJpegError

try:
    from . import _turbo
except ImportError:  # not built (no libjpeg headers): the jpeglib backend reads instead
    _turbo = None

# Upper bound on what libjpeg may allocate for one image's coefficient arrays (about 1.3 gigapixels
# at 4:2:0); reached only by files whose header declares a huge image and allow_truncated=True.
MAX_COEFFICIENT_BYTES = 2 << 30
BACKENDS = ("turbo", "jpeglib")
# libjpeg's J_COLOR_SPACE values (jpeglib.h).
_JCS_NAMES = {0: "unknown", 1: "gray", 2: "rgb", 3: "ycbcr", 4: "cmyk", 5: "ycck"}


class Decoded(NamedTuple):
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
    # on_grid and only the window asked for: components[0] is [64, rows, cols], cbcr its half
    windowed: bool = False


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


def resolve_backend(backend: str) -> str:
    """The backend a read asked for `backend` ('auto', 'turbo' or 'jpeglib') uses.

    Raises JpegError when it is not available here, ValueError for an unknown name.
    """
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


Window = tuple[int, int, int, int]
"""(top, left, rows, cols) of the luma block grid, all even: the blocks a centre crop keeps."""


def _decode_turbo(
    data: bytes, source: str, path: Path | None, grid: bool, window: Window | None = None
) -> Decoded:
    """libjpeg-turbo's blocks; with `grid`, written by the extension straight onto the contract's grid,
    and with `window` (grayscale or 4:2:0 frames) only that window of it."""
    try:
        out = _turbo.read_coefficients(data, MAX_COEFFICIENT_BYTES, grid, window if grid else None)
    except _turbo.Error as exc:
        kind, message, warnings = exc.args
        raise _libjpeg_error(kind, message, source, warnings) from None
    height, width, progressive, _, space, _, sampling, qt, arrays, warnings = out
    comps = [np.frombuffer(buf, dtype=np.int16).reshape(c, r, w) for buf, c, r, w in arrays]
    tables = None if qt is None else np.frombuffer(qt, dtype=np.uint16).reshape(len(sampling), 64)
    space_name = _JCS_NAMES.get(space, "unknown")
    return Decoded(
        comps,
        sampling,
        tables,
        height,
        width,
        progressive,
        space_name,
        warnings,
        grid,
        grid and window is not None,
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
JPEGLIB_MAX_SEGMENTS = 49


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


def _decode_jpeglib(
    data: bytes, source: str, path: Path | None, grid: bool, window: Window | None = None
) -> Decoded:
    """The blocks as stored, whatever `grid` and `window` ask (jpeglib reads whole images only)."""
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
    return Decoded(
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


DECODERS: dict[str, Callable[[bytes, str, Path | None, bool, Window | None], Decoded]] = {
    "turbo": _decode_turbo,
    "jpeglib": _decode_jpeglib,
}
