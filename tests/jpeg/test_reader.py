"""The JPEG coefficient reader: both backends give identical arrays, the arrays are the file's own
coefficients in the contract's layout, and the jpeglib fallback works without the C extension."""

from __future__ import annotations

import io
import math
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dctq.jpeg.reader import available_backends, read_blocks, read_jpeg

HAS_TURBO = "turbo" in available_backends()
needs_turbo = pytest.mark.skipif(not HAS_TURBO, reason="dctq.jpeg._turbo is not built here")
# Pillow's subsampling argument per layout name.
LAYOUTS = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2, "gray": None}


def _rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 7, yy * 3, (2 * xx + yy) * 2], axis=-1) % 256
    return np.clip(base + rng.integers(-30, 30, size=(height, width, 3)), 0, 255).astype(np.uint8)


def _jpeg(
    height: int, width: int, layout: str = "4:2:0", progressive: bool = False, quality: int = 90
) -> bytes:
    img = Image.fromarray(_rgb(height, width))
    kwargs = {"quality": quality, "progressive": progressive}
    if layout == "gray":
        img = img.convert("L")
    else:
        kwargs["subsampling"] = LAYOUTS[layout]
    buf = io.BytesIO()
    img.save(buf, format="JPEG", **kwargs)
    return buf.getvalue()


def test_available_backends() -> None:
    backends = available_backends()
    assert "jpeglib" in backends
    assert backends[-1] == "jpeglib"  # the fallback comes last; 'auto' takes the first
    try:
        from dctq.jpeg import _turbo  # noqa: F401
    except ImportError:
        assert backends == ["jpeglib"]
    else:
        assert backends == ["turbo", "jpeglib"]


@needs_turbo
@pytest.mark.parametrize("progressive", [False, True], ids=["baseline", "progressive"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("size", [(33, 47), (17, 9), (32, 32), (40, 150)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_backends_agree_on_blocks(size: tuple[int, int], layout: str, progressive: bool) -> None:
    data = _jpeg(*size, layout=layout, progressive=progressive)
    turbo = read_blocks(data, backend="turbo")
    ref = read_blocks(data, backend="jpeglib")
    assert turbo.sampling == ref.sampling
    assert (turbo.height, turbo.width, turbo.progressive, turbo.color_space) == (
        ref.height,
        ref.width,
        ref.progressive,
        ref.color_space,
    )
    assert turbo.progressive is progressive
    assert len(turbo.components) == (1 if layout == "gray" else 3)
    for a, b in zip(turbo.components, ref.components, strict=True):
        assert a.dtype == b.dtype == np.int16
        assert a.shape == b.shape and np.array_equal(a, b)
    for a, b in zip(turbo.qt, ref.qt, strict=True):
        assert a.dtype == np.uint16 and np.array_equal(a, b)


@needs_turbo
@pytest.mark.parametrize("progressive", [False, True], ids=["baseline", "progressive"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("size", [(33, 47), (17, 9), (40, 150)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_backends_agree_on_coefficients(size: tuple[int, int], layout: str, progressive: bool) -> None:
    data = _jpeg(*size, layout=layout, progressive=progressive)
    a, b = read_jpeg(data, backend="turbo"), read_jpeg(data, backend="jpeglib")
    assert np.array_equal(a.y, b.y) and np.array_equal(a.qt, b.qt)
    assert (a.cbcr is None) == (b.cbcr is None) == (layout == "gray")
    if a.cbcr is not None:
        assert np.array_equal(a.cbcr, b.cbcr)
    assert (a.height, a.width, a.subsampling, a.progressive) == (
        b.height,
        b.width,
        b.subsampling,
        b.progressive,
    )


@pytest.mark.parametrize("backend", available_backends())
@pytest.mark.parametrize("layout", ["4:2:0", "gray"])
@pytest.mark.parametrize("size", [(33, 47), (17, 9), (48, 16)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_contract_layout(size: tuple[int, int], layout: str, backend: str) -> None:
    """For 4:2:0 and gray the contract is the file's blocks, zero-padded to the 16-px grid."""
    h, w = size
    coef = read_jpeg(_jpeg(h, w, layout=layout), backend=backend)
    blocks = read_blocks(_jpeg(h, w, layout=layout), backend=backend)
    hb, wb = 2 * math.ceil(h / 16), 2 * math.ceil(w / 16)
    assert coef.y.shape == (64, hb, wb) and coef.y.dtype == np.int16
    assert coef.block_grid == (hb, wb)
    luma = blocks.components[0]
    assert luma.shape == (64, math.ceil(h / 8), math.ceil(w / 8))
    expected = np.zeros((64, hb, wb), np.int16)
    expected[:, : luma.shape[1], : luma.shape[2]] = luma
    assert np.array_equal(coef.y, expected)
    assert coef.qt.shape == (3, 64) and coef.qt.dtype == np.uint16
    if layout == "gray":
        assert coef.cbcr is None and coef.subsampling == "gray" and coef.is_gray
        assert all(np.array_equal(row, blocks.qt[0]) for row in coef.qt)
    else:
        assert coef.cbcr.shape == (128, hb // 2, wb // 2) and coef.cbcr.dtype == np.int16
        assert np.array_equal(coef.cbcr, np.concatenate(blocks.components[1:]))
        assert np.array_equal(coef.qt, np.stack(blocks.qt))
        assert coef.subsampling == "4:2:0"
        assert not np.array_equal(coef.qt[0], coef.qt[1])  # Pillow: luma and chroma tables differ


@pytest.mark.parametrize("backend", available_backends())
def test_coefficients_are_the_image(backend: str) -> None:
    """IDCT of the dequantized blocks gives back Pillow's decoded pixels: k = 8*u + v, u vertical."""
    h, w = 33, 47
    data = _jpeg(h, w, layout="gray", quality=95)
    coef = read_jpeg(data, backend=backend)
    n = np.arange(8)
    d = np.sqrt(2 / 8) * np.cos(np.pi * (2 * n[None, :] + 1) * n[:, None] / 16)
    d[0] /= np.sqrt(2)  # orthonormal DCT-II: row u is frequency u
    blocks = (coef.y.astype(np.float64) * coef.qt[0][:, None, None]).reshape(8, 8, *coef.block_grid)
    pixels = np.einsum("ux,vy,uvij->ixjy", d, d, blocks).reshape(8 * coef.block_grid[0], -1) + 128
    decoded = np.asarray(Image.open(io.BytesIO(data)), dtype=np.float64)
    err = np.abs(np.clip(np.round(pixels[:h, :w]), 0, 255) - decoded)
    assert err.max() <= 2 and err.mean() < 0.3
    transposed = np.einsum("ux,vy,uvij->iyjx", d, d, blocks).reshape(8 * coef.block_grid[0], -1) + 128
    assert np.abs(transposed[:h, :w] - decoded).mean() > 5  # the test can tell the orientation apart


@pytest.mark.parametrize("backend", available_backends())
def test_path_bytes_and_bytearray_agree(tmp_path: Path, backend: str) -> None:
    data = _jpeg(24, 40, layout="4:2:2", progressive=True)
    path = tmp_path / "a.jpg"
    path.write_bytes(data)
    from_path = read_jpeg(path, backend=backend)
    from_str = read_jpeg(str(path), backend=backend)
    from_bytes = read_jpeg(data, backend=backend)
    from_array = read_jpeg(bytearray(data), backend=backend)
    assert from_path.source == from_str.source == str(path)
    assert from_bytes.source == from_array.source == "<bytes>"
    for other in (from_str, from_bytes, from_array):
        assert np.array_equal(other.y, from_path.y) and np.array_equal(other.cbcr, from_path.cbcr)
    assert from_path.subsampling == "4:2:2" and from_path.progressive
    assert (from_path.height, from_path.width) == (24, 40)


def test_auto_is_the_first_backend() -> None:
    data = _jpeg(16, 16)
    auto = read_blocks(data)
    first = read_blocks(data, backend=available_backends()[0])
    assert all(np.array_equal(a, b) for a, b in zip(auto.components, first.components, strict=True))


@pytest.mark.parametrize("backend", available_backends())
def test_threads_read_concurrently(backend: str) -> None:
    datas = [
        _jpeg(40, 56, layout=layout, progressive=p) for layout in ("4:2:0", "gray") for p in (False, True)
    ]
    expected = [read_jpeg(d, backend=backend).y for d in datas]
    results: list[list[bool]] = []

    def work() -> None:
        results.append(
            [np.array_equal(read_jpeg(d, backend=backend).y, e) for d, e in zip(datas, expected, strict=True)]
        )

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [[True] * len(datas)] * 4


def test_jpeglib_fallback_without_the_extension(tmp_path: Path) -> None:
    """A process where dctq.jpeg._turbo cannot be imported reads through jpeglib, and says so for 'turbo'."""
    path = tmp_path / "a.jpg"
    path.write_bytes(_jpeg(33, 47))
    script = f"""
import sys
sys.modules["dctq.jpeg._turbo"] = None  # as if the extension was never built
from dctq.common.errors import JpegError
from dctq.jpeg.reader import available_backends, read_jpeg
assert available_backends() == ["jpeglib"], available_backends()
coef = read_jpeg({str(path)!r})
print(coef.y.shape, int(abs(coef.y).sum()))
try:
    read_jpeg({str(path)!r}, backend="turbo")
except JpegError as exc:
    print("refused:", exc)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    ref = read_jpeg(path, backend="jpeglib")
    lines = out.stdout.splitlines()
    assert lines[0] == f"{ref.y.shape} {int(abs(ref.y).sum())}"
    assert lines[1].startswith("refused: JPEG reader backend 'turbo' is not available here")
    assert "libjpeg62-turbo-dev" in lines[1]


def test_jpeglib_stderr_lines_other_than_libjpeg_warnings_pass_through(capfd) -> None:
    from dctq.jpeg.decoders import _warnings_in

    lines = [
        "Premature end of JPEG file",
        "INFO another thread logged this",
        "Corrupt JPEG data: bad Huffman code",
    ]
    assert _warnings_in(lines) == [
        ("truncated", "Premature end of JPEG file"),
        ("corrupt", "Corrupt JPEG data: bad Huffman code"),
    ]
    assert capfd.readouterr().err == "INFO another thread logged this\n"


# ---------------------------------------------------------------- only the blocks a crop keeps


@pytest.mark.parametrize("backend", available_backends())
@pytest.mark.parametrize("progressive", [False, True], ids=["baseline", "progressive"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("size", [(32, 32), (40, 72), (100, 37), (8, 8), (200, 150)])
@pytest.mark.parametrize("grid", [(4, 4), (2, 2), (8, 6), (14, 20), (30, 2)])
def test_fit_grid_is_the_centre_crop_of_the_whole_read(grid, size, layout: str, progressive, backend) -> None:
    """Baseline 4:2:0 and gray files are streamed (turbo), the others cropped after a whole read."""
    from dctq.jpeg.geometry import center_crop_or_pad

    data = _jpeg(*size, layout=layout, progressive=progressive)
    whole = read_jpeg(data, backend=backend)
    want_y, want_cbcr = center_crop_or_pad(whole.y, whole.cbcr, *grid)
    got = read_jpeg(data, backend=backend, fit_grid=grid)
    assert np.array_equal(got.y, want_y) and got.y.dtype == np.int16
    assert (got.cbcr is None and want_cbcr is None) or np.array_equal(got.cbcr, want_cbcr)
    assert (got.height, got.width, got.subsampling) == (whole.height, whole.width, whole.subsampling)


def test_fit_grid_reads_damaged_files_as_the_whole_read_does() -> None:
    """Truncated, corrupted and garbage-tailed files: the same error, or (allow_truncated) the same
    zero-filled blocks, whether the window is streamed or cropped from the whole image."""
    from dctq.jpeg.geometry import center_crop_or_pad

    rng = np.random.default_rng(0)
    for seed in range(40):
        data = bytearray(_jpeg(96, 80, layout="gray" if seed % 5 == 0 else "4:2:0", quality=80))
        cut = int(rng.integers(400, len(data)))
        if seed % 3 == 0:
            data = data[:cut]
        elif seed % 3 == 1:
            for at in rng.integers(300, len(data), 3):
                data[int(at)] = int(rng.integers(0, 256))
        else:
            data = data[:cut] + bytes(rng.integers(0, 256, 50, dtype=np.uint8))
        for allow in (False, True):
            outcomes = []
            for fit in (None, (6, 4)):
                try:
                    got = read_jpeg(bytes(data), allow_truncated=allow, fit_grid=fit)
                except Exception as exc:
                    outcomes.append(type(exc).__name__)
                    continue
                outcomes.append(
                    center_crop_or_pad(got.y, got.cbcr, 6, 4) if fit is None else (got.y, got.cbcr)
                )
            if isinstance(outcomes[0], str) or isinstance(outcomes[1], str):
                assert outcomes[0] == outcomes[1], (seed, allow)
            else:
                (y0, c0), (y1, c1) = outcomes
                assert np.array_equal(y0, y1) and ((c0 is None and c1 is None) or np.array_equal(c0, c1))


@needs_turbo
def test_a_streamed_window_holds_one_mcu_row_not_the_image() -> None:
    """A centre crop of a baseline 8192x8192 file: libjpeg decodes it MCU row by MCU row into the window
    (the whole read holds 384 MB of coefficient arrays). Peak RSS of a fresh process, before and after."""
    code = (
        f"import resource, sys; sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})\n"
        "from helpers import flat_jpeg\n"
        "from dctq.jpeg.reader import read_jpeg\n"
        "data = flat_jpeg(8192, 8192)\n"
        "read_jpeg(flat_jpeg(64, 64), fit_grid=(4, 4))\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "got = read_jpeg(data, fit_grid=(4, 4), max_pixels=0)\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(got.y.shape, (after - before) // 1024)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    shape, grown_mb = done.stdout.rsplit(" ", 1)
    assert shape == "(64, 4, 4)" and int(grown_mb) < 32, done.stdout + done.stderr[-2000:]


@needs_turbo
def test_a_crop_of_a_large_photo_allocates_only_the_crop() -> None:
    """The turbo decoder writes the window straight into buffers of the window's size: a 32-px model's
    read of a 4096x4096 file holds 4 KiB of output, not the 48 MiB of the whole grid."""
    from helpers import flat_jpeg

    got = read_jpeg(flat_jpeg(4096, 4096), backend="turbo", fit_grid=(4, 4))
    assert got.y.shape == (64, 4, 4) and got.cbcr.shape == (128, 2, 2)
    for plane in (got.y, got.cbcr):
        base = plane
        while getattr(base, "base", None) is not None:
            base = base.base
        assert len(memoryview(base).cast("B")) == plane.nbytes  # the extension's buffer is the window


@pytest.mark.skipif("turbo" not in available_backends(), reason="the C extension is not built")
def test_entropy_decode_diagnostic_reads_or_raises():
    """_turbo.entropy_decode (bench/jpeg_read.py's floor): the Huffman pass alone, libjpeg errors raised."""
    from helpers import jpeg_bytes, smooth_rgb

    from dctq.jpeg import _turbo

    assert _turbo.entropy_decode(jpeg_bytes(smooth_rgb(40, 56), subsampling=0, progressive=True)) is None
    with pytest.raises(_turbo.Error) as info:
        _turbo.entropy_decode(b"\xff\xd8\xff")
    assert info.value.args[0] in ("corrupt", "not_jpeg")
