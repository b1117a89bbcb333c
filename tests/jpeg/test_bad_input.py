"""Bad input to the JPEG reader: every case ends in the JpegError family with a message that names the
source, says what is wrong and what to do, on every backend (the jpeglib one included: it must never
take the interpreter down or print on stderr)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import jpeglib
import numpy as np
import pytest
from PIL import Image

from dctq.common.errors import CorruptJpegError, JpegError, NotAJpegError, UnsupportedJpegError
from dctq.jpeg.reader import MAX_COEFFICIENT_BYTES, JpegBlocks, available_backends, read_blocks, read_jpeg

BACKENDS = available_backends()


def _rgb(height: int = 32, width: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 4, yy * 5, (xx + yy) * 2], axis=-1) % 256
    return np.clip(base + rng.integers(-20, 20, size=(height, width, 3)), 0, 255).astype(np.uint8)


def _jpeg(mode: str = "RGB", **kwargs) -> bytes:
    img = Image.fromarray(_rgb())
    if mode != "RGB":
        img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=kwargs.pop("quality", 85), **kwargs)
    return buf.getvalue()


def _segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, offset of 0xFF, total length incl. marker) of each segment up to and including SOS."""
    out, pos = [], 2
    while pos < len(data):
        marker = data[pos + 1]
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        out.append((marker, pos, 2 + length))
        if marker == 0xDA:
            break
        pos += 2 + length
    return out


def _offset(data: bytes, marker: int) -> int:
    return next(off for m, off, _ in _segments(data) if m == marker)


def _scan_start(data: bytes) -> int:
    _, off, total = _segments(data)[-1]
    return off + total


def _patch(data: bytes, offset: int, values: bytes) -> bytes:
    return data[:offset] + values + data[offset + len(values) :]


def _read(source, backend: str, **kwargs) -> JpegBlocks:
    # read_blocks runs every check read_jpeg runs, without needing the chroma layout module.
    return read_blocks(source, backend=backend, **kwargs)


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


def test_missing_file(tmp_path: Path, backend: str) -> None:
    path = tmp_path / "nope.jpg"
    with pytest.raises(JpegError, match=re.escape(str(path)) + ".*no such file"):
        _read(path, backend)


def test_directory(tmp_path: Path, backend: str) -> None:
    with pytest.raises(JpegError, match=r"is a folder, not a file"):
        _read(tmp_path, backend)


def test_empty_file(tmp_path: Path, backend: str) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(NotAJpegError, match=r"empty\.jpg.*empty \(0 bytes\)"):
        _read(path, backend)


def test_png_renamed(tmp_path: Path, backend: str) -> None:
    path = tmp_path / "photo.jpg"
    Image.fromarray(_rgb()).save(path, format="PNG")
    with pytest.raises(NotAJpegError, match=r"photo\.jpg: not a JPEG file .*a PNG image.*convert"):
        _read(path, backend)


def test_text_renamed(tmp_path: Path, backend: str) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("shopping list\nmilk\n")
    with pytest.raises(NotAJpegError, match=r"looks like text"):
        _read(path, backend)


def test_bytes_source_named_in_message(backend: str) -> None:
    with pytest.raises(NotAJpegError, match=r"^<bytes>: "):
        _read(b"GIF89a....", backend)


def _header_spans(data: bytes) -> list[tuple[int, int]]:
    """[start, end) of every marker segment after the first scan begins (DHT, SOS of later scans, ...)."""
    spans, pos = [], _scan_start(data)
    while (pos := data.find(b"\xff", pos)) >= 0 and pos + 1 < len(data):
        marker = data[pos + 1]
        if marker in (0x00, 0xFF, 0xD9) or 0xD0 <= marker <= 0xD7:
            pos += 1
            continue
        end = pos + 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        spans.append((pos, end))
        pos = end
    return spans


def _cut_in_scan_data(data: bytes, fraction: float) -> int:
    cut = _scan_start(data) + int((len(data) - _scan_start(data)) * fraction)
    for start, end in _header_spans(data):
        if start <= cut < end:
            cut = start - 1
    return cut


@pytest.mark.parametrize("progressive", [False, True])
@pytest.mark.parametrize("fraction", [0.35, 0.6, 0.9])
def test_truncated_scan_data(backend: str, progressive: bool, fraction: float) -> None:
    data = _jpeg(progressive=progressive)
    cut = data[: _cut_in_scan_data(data, fraction)]
    with pytest.raises(CorruptJpegError, match=r"truncated.*allow_truncated=True"):
        _read(cut, backend)
    got = _read(cut, backend, allow_truncated=True)
    full = _read(data, backend)
    assert [c.shape for c in got.components] == [c.shape for c in full.components]
    assert any("Premature end" in w for w in got.warnings)
    # What was decoded before the cut is kept; libjpeg zero-fills the rest.
    assert not all(np.array_equal(a, b) for a, b in zip(got.components, full.components, strict=True))
    if not progressive:
        assert np.array_equal(got.components[0][:, 0, 0], full.components[0][:, 0, 0])


def test_truncated_inside_a_later_scan_header(backend: str) -> None:
    # libjpeg reads its fake end marker as scan parameters and gives up: an error even when opted in.
    data = _jpeg(progressive=True)
    start, _ = next((s, e) for s, e in _header_spans(data) if data[s + 1] == 0xDA)
    for allow in (False, True):
        with pytest.raises(CorruptJpegError, match=r"truncated"):
            _read(data[: start + 5], backend, allow_truncated=allow)


def test_missing_eoi_only(backend: str) -> None:
    data = _jpeg()
    assert data.endswith(b"\xff\xd9")
    with pytest.raises(CorruptJpegError, match=r"Premature end of JPEG file"):
        _read(data[:-2], backend)
    got = _read(data[:-2], backend, allow_truncated=True)
    full = _read(data, backend)
    assert all(np.array_equal(a, b) for a, b in zip(got.components, full.components, strict=True))


@pytest.mark.parametrize("cut", [3, 40, 150, -3], ids=["soi", "dqt", "dht", "inside-sos"])
def test_truncated_header(backend: str, cut: int) -> None:
    data = _jpeg()
    cut = cut if cut > 0 else _scan_start(data) + cut
    assert cut < _scan_start(data)
    for allow in (False, True):
        with pytest.raises(CorruptJpegError, match=r"before (any image frame|the first scan)"):
            _read(data[:cut], backend, allow_truncated=allow)


def test_corrupt_entropy_data(backend: str) -> None:
    data = _jpeg(quality=95)
    start = _scan_start(data)
    mid = (start + len(data)) // 2
    junk = (
        np.random.default_rng(3).integers(0, 256, size=24, dtype=np.uint8).tobytes().replace(b"\xff", b"\x00")
    )
    bad = _patch(data, mid, junk)
    with pytest.raises(CorruptJpegError, match=r"damaged \(libjpeg: Corrupt JPEG data"):
        _read(bad, backend)
    assert _read(bad, backend, allow_truncated=True).warnings


def test_stray_restart_marker(backend: str) -> None:
    data = _jpeg(quality=95)
    mid = (_scan_start(data) + len(data)) // 2
    bad = data[:mid] + b"\xff\xd3" + data[mid:]
    with pytest.raises(CorruptJpegError, match=r"Corrupt JPEG data"):
        _read(bad, backend)


def test_missing_huffman_tables(backend: str) -> None:
    # Motion-JPEG frames leave out DHT and mean the standard tables (those Pillow writes unoptimised).
    # libjpeg-turbo falls back to them; jpeglib's default libjpeg 6b refuses: a documented difference.
    data = _jpeg()
    bad = data
    for _, off, total in reversed([s for s in _segments(data) if s[0] == 0xC4]):
        bad = bad[:off] + bad[off + total :]
    assert len(bad) < len(data) - 400
    if backend == "turbo":
        got, full = _read(bad, backend), _read(data, backend)
        assert all(np.array_equal(a, b) for a, b in zip(got.components, full.components, strict=True))
    else:
        with pytest.raises(CorruptJpegError, match=r"Huffman table 0x00 was not defined"):
            _read(bad, backend)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d[:2] + b"\xff\xd8" + d[2:], "second SOI"),
        (lambda d: d[:2] + b"\xff\xfe\x00\x01" + d[2:], "has length 1"),
        (lambda d: _patch(d, _offset(d, 0xC0) + 2, b"\x00\x09"), "SOF.*cut short"),
        (lambda d: d[: _offset(d, 0xC0)] + d[_scan_start(d) - 14 :], "scan starts before any frame"),
        (lambda d: _patch(d, _offset(d, 0xC0) + 11, b"\x00"), "sampling factors 0x0, 1x1, 1x1"),
        (lambda d: _patch(d, _offset(d, 0xC0) + 9, b"\x00"), "0 components"),
        (lambda d: _patch(d, _offset(d, 0xDB) + 5, b"\x00"), "quantization table holds a zero step"),
    ],
    ids=["two-soi", "bad-length", "short-sof", "sos-before-sof", "zero-sampling", "no-components", "zero-qt"],
)
def test_bad_markers(backend: str, edit, message: str) -> None:
    with pytest.raises(CorruptJpegError, match=message):
        _read(edit(_jpeg()), backend)


def test_cmyk(tmp_path: Path, backend: str) -> None:
    path = tmp_path / "print.jpg"
    path.write_bytes(_jpeg(mode="CMYK"))
    with pytest.raises(UnsupportedJpegError, match=r"print\.jpg: CMYK JPEG is not supported.*convert"):
        _read(path, backend)


def test_ycck(backend: str) -> None:
    data = _jpeg(mode="CMYK")
    adobe = data.index(b"Adobe")
    assert data[adobe + 11] == 0  # Pillow writes transform 0 (CMYK); 2 means YCCK
    with pytest.raises(UnsupportedJpegError, match=r"YCCK JPEG is not supported"):
        _read(_patch(data, adobe + 11, b"\x02"), backend)


def test_rgb_coded(backend: str) -> None:
    data = _jpeg(subsampling=0)
    app0 = _offset(data, 0xE0)
    total = next(t for m, _, t in _segments(data) if m == 0xE0)
    data = data[:app0] + data[app0 + total :]
    sof = _offset(data, 0xC0)
    for i, ident in enumerate(b"RGB"):
        data = _patch(data, sof + 10 + 3 * i, bytes([ident]))
    with pytest.raises(UnsupportedJpegError, match=r"RGB JPEG is not supported"):
        _read(data, backend)


def test_12_bit(backend: str) -> None:
    data = _jpeg()
    sof = _offset(data, 0xC0)
    bad = _patch(_patch(data, sof, b"\xff\xc1"), sof + 4, b"\x0c")
    with pytest.raises(UnsupportedJpegError, match=r"12-bit samples are not supported, only 8-bit"):
        _read(bad, backend)


def test_12_bit_in_the_extension_itself() -> None:
    # The header check answers first; the extension must still turn libjpeg's error into an exception.
    turbo = pytest.importorskip("dctq.jpeg._turbo")
    data = _jpeg()
    sof = _offset(data, 0xC0)
    with pytest.raises(turbo.Error) as info:
        turbo.read_coefficients(_patch(data, sof + 4, b"\x0c"))
    assert info.value.args[:2] == ("unsupported", "Unsupported JPEG data precision 12")


def test_arithmetic_patched(backend: str) -> None:
    data = _jpeg()
    bad = _patch(data, _offset(data, 0xC0), b"\xff\xc9")
    with pytest.raises(UnsupportedJpegError, match=r"arithmetic coding.*jpegtran"):
        _read(bad, backend)


def test_arithmetic_real(tmp_path: Path, backend: str) -> None:
    # A genuine arithmetic-coded file, written by jpeglib's bundled libjpeg-turbo 2.1.
    previous = jpeglib.version.get()
    try:
        jpeglib.version.set("turbo210")
        jpeglib.from_spatial(_rgb()).write_spatial(str(tmp_path / "a.jpg"), qt=80, flags=["+ARITH_CODE"])
    finally:
        jpeglib.version.set(previous)
    assert (tmp_path / "a.jpg").read_bytes()[:200].find(b"\xff\xc9") > 0
    with pytest.raises(UnsupportedJpegError, match=r"arithmetic-coded sequential"):
        _read(tmp_path / "a.jpg", backend)


def test_lossless(backend: str) -> None:
    data = _jpeg()
    with pytest.raises(UnsupportedJpegError, match=r"lossless JPEG"):
        _read(_patch(data, _offset(data, 0xC0), b"\xff\xc3"), backend)


@pytest.mark.parametrize("layout", ["4:4:0", "4:1:1", "4:1:0"])
def test_unsupported_sampling(tmp_path: Path, backend: str, layout: str) -> None:
    path = tmp_path / "odd.jpg"
    img = jpeglib.from_spatial(_rgb())
    img.samp_factor = layout
    img.write_spatial(str(path), qt=80)
    with pytest.raises(
        UnsupportedJpegError, match=r"odd\.jpg: chroma sampling .* accepted layouts are 4:2:0"
    ):
        _read(path, backend)


def test_gray_with_2x2_factors_is_read(backend: str) -> None:
    # One component: the MCU is one block whatever the factors, so this is a plain grayscale file.
    data = _jpeg(mode="L")
    sof = _offset(data, 0xC0)
    assert data[sof + 11] == 0x11
    got = _read(_patch(data, sof + 11, b"\x22"), backend)
    plain = _read(data, backend)
    assert np.array_equal(got.components[0], plain.components[0])
    assert got.sampling == ((2, 2),)


def test_forged_huge_size(backend: str) -> None:
    data = _jpeg()
    bad = _patch(data, _offset(data, 0xC0) + 5, (60000).to_bytes(2, "big") * 2)
    with pytest.raises(CorruptJpegError, match=r"60000x60000 image .* only \d+ bytes"):
        _read(bad, backend)
    with pytest.raises(
        UnsupportedJpegError, match=r"60000x60000 pixels \(3600\.0 MP\) is more than the pixel limit"
    ):
        _read(bad, backend, allow_truncated=True)
    with pytest.raises(UnsupportedJpegError, match=f"more than {MAX_COEFFICIENT_BYTES >> 20} MiB"):
        _read(bad, backend, allow_truncated=True, max_pixels=0)


def test_many_comment_segments() -> None:
    # jpeglib's C marker reader holds at most 50 APP/COM segments; the reader refuses before it overflows.
    data = _jpeg()
    many = data[:2] + b"\xff\xfe\x00\x05abc" * 60 + data[2:]
    with pytest.raises(UnsupportedJpegError, match=r"61 APP/COM segments.*backend=.turbo."):
        _read(many, "jpeglib")
    if "turbo" in BACKENDS:
        assert np.array_equal(_read(many, "turbo").components[0], _read(data, "turbo").components[0])


def test_nothing_printed_on_stderr(capfd, backend: str) -> None:
    data = _jpeg()
    for bad in (data[: len(data) // 2], b"\xff\xd8\xff\xd9", data[:2] + b"\x00" * 50):
        with pytest.raises(JpegError):
            _read(bad, backend)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_unknown_backend() -> None:
    with pytest.raises(ValueError, match=r"unknown JPEG reader backend 'fast'"):
        read_blocks(_jpeg(), backend="fast")


def test_read_jpeg_raises_the_same(backend: str) -> None:
    data = _jpeg()
    with pytest.raises(CorruptJpegError):
        read_jpeg(data[: len(data) // 2], backend=backend)
