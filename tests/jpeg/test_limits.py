"""jpeg/limits.py and the guarded reads: what one JPEG read may take (a regular file of bounded size, a
bounded number of pixels), whatever a hostile file declares or is."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY, flat_jpeg, jpeg_bytes, saved_model, scan_bomb_jpeg, smooth_rgb
from typer.testing import CliRunner

from dctq.cli.main import app
from dctq.common.errors import ConfigError, JpegError, UnsupportedJpegError
from dctq.jpeg.dataset import JpegFolder
from dctq.jpeg.limits import DEFAULT_MAX_PIXELS, MAX_FILE_BYTES, MAX_PIXELS_ENV, MAX_SCANS, resolve_max_pixels
from dctq.jpeg.reader import available_backends, read_jpeg
from dctq.jpeg.recompress import QualityPolicy
from dctq.jpeg.rgb import decode_rgb

BOMB = (16384, 16384)
"""A valid 1.5 MB JPEG of 268 megapixels: 800 MB of coefficients or RGB once decoded."""


def test_the_limit_comes_from_the_call_the_environment_or_the_default(monkeypatch) -> None:
    monkeypatch.setenv(MAX_PIXELS_ENV, "")  # restored after the test, whatever the CLI sets
    assert resolve_max_pixels() == DEFAULT_MAX_PIXELS == 100_000_000
    assert resolve_max_pixels(5) == 5 and resolve_max_pixels(0) is None
    monkeypatch.setenv(MAX_PIXELS_ENV, "1234")
    assert resolve_max_pixels() == 1234 and resolve_max_pixels(99) == 99
    monkeypatch.setenv(MAX_PIXELS_ENV, "lots")
    with pytest.raises(ConfigError, match=r"DCTQ_MAX_PIXELS='lots' is not a whole number"):
        resolve_max_pixels()
    with pytest.raises(ConfigError, match="must be >= 0"):
        resolve_max_pixels(-1)


@pytest.mark.parametrize("backend", available_backends())
def test_a_pixel_bomb_is_refused_from_its_header(backend: str, monkeypatch) -> None:
    monkeypatch.setenv(MAX_PIXELS_ENV, "")  # restored after the test, whatever the CLI sets
    bomb = flat_jpeg(*BOMB)
    assert len(bomb) < 2 << 20
    with pytest.raises(
        UnsupportedJpegError, match=r"16384x16384 pixels \(268\.4 MP\) is more than the pixel limit"
    ):
        read_jpeg(bomb, backend=backend)
    small = flat_jpeg(256, 256)
    with pytest.raises(UnsupportedJpegError, match=r"--max-pixels"):
        read_jpeg(small, backend=backend, max_pixels=256 * 255)
    assert read_jpeg(small, backend=backend, max_pixels=256 * 256).y.shape == (64, 32, 32)
    monkeypatch.setenv(MAX_PIXELS_ENV, "1000")
    with pytest.raises(UnsupportedJpegError, match="pixel limit"):
        read_jpeg(small, backend=backend)


def test_pillow_paths_check_the_limit_before_decoding(tmp_path, monkeypatch) -> None:
    """The RGB models' decoder and the re-compression of training data (Pillow) see no pixel bomb."""
    monkeypatch.setenv(MAX_PIXELS_ENV, "")  # restored after the test, whatever the CLI sets
    with pytest.raises(UnsupportedJpegError, match="pixel limit"):
        decode_rgb(flat_jpeg(*BOMB), "bomb.jpg")
    root = tmp_path / "data"
    (root / "a").mkdir(parents=True)
    (root / "a" / "bomb.jpg").write_bytes(flat_jpeg(*BOMB))
    folder = JpegFolder(root, input_size=32, train=False, qualities=QualityPolicy(test_quality=50))
    with pytest.raises(UnsupportedJpegError, match=r"bomb\.jpg: 16384x16384 pixels"):
        folder[0]


def _in_child(code: str, *, timeout: float = 30, memory: int | None = None) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter (address space capped at `memory` bytes): a hang or a runaway read
    fails the test instead of hanging the suite or the machine."""

    def cap() -> None:
        if memory is not None:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    try:
        return subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, preexec_fn=cap
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"hung for {timeout} s: {code}")


def _read_in_child(path: Path, call: str = "read_jpeg({path!r})") -> str:
    done = _in_child(
        "from dctq.jpeg.reader import read_jpeg\n"
        f"try:\n    {call.format(path=str(path))}\nexcept Exception as e:\n    print(type(e).__name__, e)",
        memory=1 << 30,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_named_jpg_is_refused_at_once(tmp_path) -> None:
    fifo = tmp_path / "img.jpg"
    os.mkfifo(fifo)
    said = _read_in_child(fifo)
    assert said.startswith("JpegError") and "img.jpg: is a FIFO (named pipe), not a regular file" in said


def test_a_link_to_dev_zero_is_refused_before_any_read(tmp_path) -> None:
    link = tmp_path / "zero.jpg"
    link.symlink_to("/dev/zero")
    said = _read_in_child(link)
    assert said.startswith("JpegError") and "zero.jpg: is a character device, not a regular file" in said


def test_a_file_too_large_for_any_jpeg_is_refused_unread(tmp_path) -> None:
    huge = tmp_path / "disk.jpg"
    with huge.open("wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)  # sparse: costs no disk
    said = _read_in_child(huge)
    assert said.startswith("UnsupportedJpegError") and "more than the 1073741824-byte limit" in said


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_special_files_in_a_data_folder_and_on_the_command_line_fail_in_one_line(tmp_path) -> None:
    root = tmp_path / "data"
    (root / "cat").mkdir(parents=True)
    (root / "cat" / "0.jpg").write_bytes(jpeg_bytes(smooth_rgb(32, 32)))
    os.mkfifo(root / "cat" / "1.jpg")
    (root / "cat" / "2.jpg").symlink_to("/dev/zero")
    folder = JpegFolder(root, input_size=32, train=False)
    assert folder[0].y.shape == (64, 4, 4)
    with pytest.raises(JpegError, match="FIFO"):
        folder[1]
    with pytest.raises(JpegError, match="character device"):
        folder[2]
    _, ckpt = saved_model(tmp_path / "m.pt", "dct_cifar_upsampling", ["cat", "dog"], num_classes=2, **TINY)
    runner = CliRunner()
    for args in (
        ["inspect", str(root / "cat" / "1.jpg")],
        ["predict", str(ckpt), str(root / "cat" / "2.jpg")],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 1 and "not a regular file" in result.output, result.output


def test_the_cli_limit_reaches_every_reader(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(MAX_PIXELS_ENV, "")  # restored after the test, whatever the CLI sets
    image = tmp_path / "img.jpg"
    image.write_bytes(flat_jpeg(64, 64))
    runner = CliRunner()
    result = runner.invoke(app, ["--max-pixels", "1000", "inspect", str(image)])
    assert result.exit_code == 1 and "64x64 pixels" in result.output and "--max-pixels" in result.output
    monkeypatch.setenv(MAX_PIXELS_ENV, "")  # restored after the test, whatever the CLI sets
    bomb = tmp_path / "bomb.jpg"
    bomb.write_bytes(flat_jpeg(*BOMB))
    _, ckpt = saved_model(tmp_path / "m.pt", "dct_cifar_upsampling", ["a", "b"], num_classes=2, **TINY)
    result = runner.invoke(app, ["predict", str(ckpt), str(bomb)])
    assert result.exit_code == 1 and "268.4 MP" in result.output
    assert np.isfinite(read_jpeg(image).y).all()


@pytest.mark.parametrize("backend", available_backends())
def test_a_scan_bomb_is_refused_before_decoding(backend: str) -> None:
    """Each of a progressive file's scans walks the whole image: 4,000 scans of a few bytes over an
    8192x8192 image (a 0.5 MB file) took libjpeg 61 s. More than MAX_SCANS are refused unread."""
    fine = read_jpeg(scan_bomb_jpeg(64, 48, MAX_SCANS - 1), backend=backend)  # + the DC scan: MAX_SCANS
    assert fine.y.shape == (64, 6, 8) and not fine.y.any() and fine.progressive
    with pytest.raises(UnsupportedJpegError, match=rf"{MAX_SCANS + 1} scans, more than the {MAX_SCANS}"):
        read_jpeg(scan_bomb_jpeg(8192, 8192, MAX_SCANS), backend=backend)


@pytest.mark.parametrize("size", [1600, 4096, 5000, 200_000])
def test_scan_count_is_exact_on_both_paths(size: int) -> None:
    """check_scans counts FF DA with bytes.count up to 4 KiB and with numpy above: MAX_SCANS markers pass
    and one more is refused either way, with markers at the very start and end."""
    from dctq.jpeg.limits import MAX_SCANS, check_scans

    rng = np.random.default_rng(size)
    for count in (MAX_SCANS, MAX_SCANS + 1):
        data = bytearray(rng.integers(0, 0xFF, size=size, dtype=np.uint8).tobytes())  # no 0xFF of its own
        for p in np.linspace(0, size - 2, count).astype(int):
            data[p : p + 2] = b"\xff\xda"
        assert bytes(data).count(b"\xff\xda") == count
        if count > MAX_SCANS:
            with pytest.raises(UnsupportedJpegError, match=f"{count} scans"):
                check_scans(bytes(data), "x")
        else:
            check_scans(bytes(data), "x")
