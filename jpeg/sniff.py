"""Cheap checks on a JPEG's header bytes, run before any decoder sees the data.

libjpeg's own errors are terse ("Unsupported JPEG process: SOF type 0xc9") and some inputs it accepts
only to produce something dctq cannot use (CMYK, RGB-coded files). Walking the marker segments up to
the first SOS costs microseconds and yields a message that says what the file is and what to do.
The colour-space rule copies libjpeg's (jdapimin.c, default_decompress_parms) so that both agree.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..common.errors import CorruptJpegError, NotAJpegError, UnsupportedJpegError

# (luma h, luma v) over the chroma factors -> layout name. Everything else is rejected.
LAYOUTS = {(1, 1): "4:4:4", (2, 1): "4:2:2", (1, 2): "4:4:0", (2, 2): "4:2:0"}
ACCEPTED = "4:2:0 (Y sampled 2x2), 4:2:2 (Y 2x1), 4:4:0 (Y 1x2), 4:4:4 (1x1) and grayscale"

_SOF_NAMES = {
    0xC0: "baseline",
    0xC1: "extended sequential",
    0xC2: "progressive",
    0xC3: "lossless",
    0xC5: "hierarchical sequential",
    0xC6: "hierarchical progressive",
    0xC7: "hierarchical lossless",
    0xC9: "arithmetic-coded sequential",
    0xCA: "arithmetic-coded progressive",
    0xCB: "arithmetic-coded lossless",
    0xCD: "hierarchical arithmetic-coded sequential",
    0xCE: "hierarchical arithmetic-coded progressive",
    0xCF: "hierarchical arithmetic-coded lossless",
}
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM, RST0-7: no length field
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x1f\x8b", "a gzip archive"),
)


@dataclass(frozen=True)
class Component:
    """One frame component as declared in the SOF segment."""

    ident: int
    h: int
    v: int
    table: int


@dataclass(frozen=True)
class JpegHeader:
    """What the marker segments before the first scan declare.

    Attributes:
        sof: the frame marker's second byte (0xC0 baseline ... 0xCF).
        precision: bits per sample (8; 12 and 16 exist).
        height, width: declared image size in pixels.
        components: frame components in file order.
        jfif: an APP0 JFIF segment was seen.
        adobe_transform: the APP14 Adobe transform byte, or None without that segment.
        app_segments: number of APPn and COM segments before the first scan.
    """

    sof: int
    precision: int
    height: int
    width: int
    components: tuple[Component, ...]
    jfif: bool
    adobe_transform: int | None
    app_segments: int

    @property
    def progressive(self) -> bool:
        return self.sof in (0xC2, 0xC6, 0xCA, 0xCE)

    @property
    def arithmetic(self) -> bool:
        return self.sof >= 0xC9

    @property
    def color_space(self) -> str:
        """'gray', 'ycbcr', 'rgb', 'cmyk', 'ycck' or 'unknown', decided as libjpeg decides it."""
        n = len(self.components)
        if n == 1:
            return "gray"
        if n == 3:
            if self.jfif:
                return "ycbcr"
            if self.adobe_transform is not None:
                return "rgb" if self.adobe_transform == 0 else "ycbcr"
            ids = tuple(c.ident for c in self.components)
            return "rgb" if ids == (82, 71, 66) else "ycbcr"
        if n == 4:
            if self.adobe_transform is None or self.adobe_transform == 0:
                return "cmyk"
            return "ycck"
        return "unknown"


def _describe_start(data: bytes) -> str:
    for signature, what in _SIGNATURES:
        if data.startswith(signature):
            return what
    head = data[:64]
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return "text"
    return "data starting with bytes " + " ".join(f"{b:02x}" for b in data[:4])


def parse_header(data: bytes, source: str) -> JpegHeader:
    """Walk the marker segments of `data` up to the first SOS and return what they declare.

    Raises:
        NotAJpegError: empty input or no SOI marker at the start (names what it looks like instead).
        CorruptJpegError: a segment runs past the end, has an impossible length, or no frame header
            comes before the first scan / the end of the data.
    """
    if len(data) == 0:
        raise NotAJpegError(f"{source}: the file is empty (0 bytes); give a JPEG file")
    if data[:2] != b"\xff\xd8":
        raise NotAJpegError(
            f"{source}: not a JPEG file (no SOI marker; it looks like {_describe_start(data)}); "
            "convert it to JPEG first or remove it from the data"
        )
    pos, n = 2, len(data)
    sof: tuple[int, int, int, int, tuple[Component, ...]] | None = None
    jfif, adobe, apps = False, None, 0
    while True:
        # Like libjpeg's next_marker: skip stray bytes and 0xFF fill bytes up to a marker code.
        while pos < n and data[pos] != 0xFF:
            pos += 1
        while pos < n and data[pos] == 0xFF:
            pos += 1
        if pos >= n:
            break
        marker = data[pos]
        pos += 1
        if marker in _STANDALONE:
            continue
        if marker == 0xD9:
            break
        if marker == 0xD8:
            raise CorruptJpegError(f"{source}: a second SOI marker at byte {pos - 2}; the file is damaged")
        if pos + 2 > n:
            break
        length = (data[pos] << 8) | data[pos + 1]
        if length < 2:
            raise CorruptJpegError(
                f"{source}: marker 0xFF{marker:02X} at byte {pos - 2} has length {length}; the file is damaged"
            )
        if marker == 0xDA and sof is None:
            raise CorruptJpegError(f"{source}: a scan starts before any frame header; the file is damaged")
        if pos + length > n:
            break
        if marker == 0xDA:
            precision, height, width, sof_marker, comps = sof
            return JpegHeader(sof_marker, precision, height, width, comps, jfif, adobe, apps)
        # Only the segments read below are sliced: this walk runs before every decode.
        if marker in _SOF_NAMES:
            if sof is not None:
                raise CorruptJpegError(f"{source}: two frame headers (SOF markers); the file is damaged")
            sof = _parse_sof(data[pos + 2 : pos + length], marker, source)
        elif 0xE0 <= marker <= 0xEF or marker == 0xFE:
            apps += 1
            if marker == 0xE0 and length >= 16 and data[pos + 2 : pos + 7] == b"JFIF\x00":
                jfif = True
            elif marker == 0xEE and length >= 14 and data[pos + 2 : pos + 7] == b"Adobe":
                adobe = data[pos + 13]
        pos += length
    if sof is None:
        raise CorruptJpegError(
            f"{source}: the data ends ({n} bytes) before any image frame; the file is truncated or damaged"
        )
    raise CorruptJpegError(
        f"{source}: the data ends ({n} bytes) before the first scan; the file is truncated or damaged"
    )


def _parse_sof(body: bytes, marker: int, source: str) -> tuple[int, int, int, int, tuple[Component, ...]]:
    if len(body) < 6 or len(body) < 6 + 3 * body[5]:
        raise CorruptJpegError(f"{source}: the frame header (SOF) is cut short; the file is damaged")
    precision, height, width, count = body[0], (body[1] << 8) | body[2], (body[3] << 8) | body[4], body[5]
    comps = tuple(
        [
            Component(body[i], body[i + 1] >> 4, body[i + 1] & 15, body[i + 2])
            for i in range(6, 6 + 3 * count, 3)
        ]
    )
    if count == 0 or not all([1 <= c.h <= 4 and 1 <= c.v <= 4 for c in comps]):
        factors = ", ".join(f"{c.h}x{c.v}" for c in comps) or "none"
        raise CorruptJpegError(
            f"{source}: the frame header gives {count} components with sampling factors {factors} "
            "(each must be 1 to 4); the file is damaged"
        )
    return precision, height, width, marker, comps


def layout_of(sampling: list[tuple[int, int]] | tuple[tuple[int, int], ...]) -> str | None:
    """Layout name ('4:2:0', '4:2:2', '4:4:4', 'gray') of per-component (h, v) factors, None if not accepted."""
    if len(sampling) == 1:
        return "gray"
    if len(sampling) != 3:
        return None
    (yh, yv), cb, cr = sampling
    if cb != cr or min(yh, yv, *cb) < 1 or yh % cb[0] or yv % cb[1]:
        return None
    return LAYOUTS.get((yh // cb[0], yv // cb[1]))


def check_supported(header: JpegHeader, source: str) -> str:
    """Raise UnsupportedJpegError for a JPEG kind dctq does not read; return its layout name otherwise.

    Accepted: 8-bit Huffman-coded baseline, extended-sequential and progressive files, YCbCr in the
    layouts of LAYOUTS, or grayscale.
    """
    kind = _SOF_NAMES[header.sof]
    if header.sof in (0xC3, 0xC5, 0xC6, 0xC7, 0xCB, 0xCD, 0xCE, 0xCF):
        raise UnsupportedJpegError(
            f"{source}: {kind} JPEG (SOF 0xFF{header.sof:02X}) is not supported; "
            "re-encode it as a baseline or progressive JPEG"
        )
    if header.arithmetic:
        raise UnsupportedJpegError(
            f"{source}: {kind} JPEG is not supported (arithmetic coding); convert it losslessly to "
            "Huffman coding with `jpegtran -optimize in.jpg > out.jpg` (coefficients are kept)"
        )
    if header.precision != 8:
        raise UnsupportedJpegError(
            f"{source}: {header.precision}-bit samples are not supported, only 8-bit JPEGs; "
            "re-encode it as an 8-bit JPEG"
        )
    if header.height == 0 or header.width == 0:
        raise UnsupportedJpegError(
            f"{source}: the frame header gives size {header.width}x{header.height} (a height set later by a "
            "DNL marker is not supported); re-encode the image"
        )
    space = header.color_space
    if space in ("cmyk", "ycck", "rgb", "unknown"):
        what = {"unknown": f"{len(header.components)}-component"}.get(space, space.upper())
        raise UnsupportedJpegError(
            f"{source}: {what} JPEG is not supported, only YCbCr colour and grayscale; "
            "convert it, e.g. `Image.open(p).convert('RGB').save(q, quality=95)` with Pillow"
        )
    layout = layout_of([(c.h, c.v) for c in header.components])
    if layout is None:
        factors = ", ".join(f"{c.h}x{c.v}" for c in header.components)
        raise UnsupportedJpegError(
            f"{source}: chroma sampling with factors (h x v per component) {factors} is not supported; "
            f"accepted layouts are {ACCEPTED}; re-encode it in one of those"
        )
    return layout


def min_blocks(header: JpegHeader) -> int:
    """Fewest 8x8 blocks the file's scans must code: each component's blocks inside the image."""
    comps = header.components
    hmax = max([c.h for c in comps])
    vmax = max([c.v for c in comps])
    # -(-a // b) is ceil(a / b) in integers: ceil(ceil(W * h / hmax) / 8) == ceil(W * h / (8 * hmax)).
    return sum([-(-header.width * c.h // (8 * hmax)) * -(-header.height * c.v // (8 * vmax)) for c in comps])


def coefficient_bytes(header: JpegHeader) -> int:
    """Bytes libjpeg allocates for the coefficient arrays: every component over whole MCUs, int16."""
    comps = header.components
    hmax = max([c.h for c in comps])
    vmax = max([c.v for c in comps])
    mcu_cols = -(-header.width // (8 * hmax))
    mcu_rows = -(-header.height // (8 * vmax))
    return sum([c.h * c.v for c in comps]) * mcu_cols * mcu_rows * 64 * 2


def check_length(header: JpegHeader, nbytes: int, source: str) -> None:
    """Raise CorruptJpegError when `nbytes` cannot hold the blocks the header declares.

    Every block of a Huffman-coded image costs at least one bit (its DC code in the first scan), so a
    complete file holds at least min_blocks/8 bytes. Checking this before decoding keeps a forged or cut
    header from making the decoder allocate and zero-fill a huge image.
    """
    blocks = min_blocks(header)
    if blocks > 8 * nbytes:
        raise CorruptJpegError(
            f"{source}: the header declares a {header.width}x{header.height} image ({blocks} blocks) but the "
            f"file has only {nbytes} bytes; it is truncated or its header is damaged"
        )
