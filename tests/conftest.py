"""Shared fixtures: tiny JPEG files written with Pillow into tmp_path."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def smooth_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    """[H, W, 3] uint8: a smooth random image (low-pass noise plus gradients), photo-like enough for JPEG."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, size=(max(2, height // 8), max(2, width // 8), 3)).astype(np.uint8)
    img = Image.fromarray(small).resize((width, height), Image.BICUBIC)
    arr = np.asarray(img).astype(np.float32)
    yy, xx = np.mgrid[0:height, 0:width]
    arr[..., 0] += 40 * np.sin(xx / 7.0)
    arr[..., 1] += 40 * np.cos(yy / 5.0)
    return np.clip(arr, 0, 255).astype(np.uint8)


def jpeg_bytes(
    rgb: np.ndarray,
    quality: int = 75,
    subsampling: int | str = 2,
    progressive: bool = False,
    mode: str = "RGB",
) -> bytes:
    """Encode `rgb` with Pillow. subsampling: 0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0."""
    img = Image.fromarray(rgb)
    if mode != "RGB":
        img = img.convert(mode)
    buf = io.BytesIO()
    kwargs = {"quality": quality, "progressive": progressive}
    if mode != "L":
        kwargs["subsampling"] = subsampling
    img.save(buf, format="JPEG", **kwargs)
    return buf.getvalue()


@pytest.fixture
def make_jpeg(tmp_path: Path):
    """Factory: make_jpeg(name, height=32, width=32, **jpeg_bytes kwargs) -> Path of a new JPEG file."""

    def _make(name: str = "img.jpg", height: int = 32, width: int = 32, seed: int = 0, **kwargs) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(jpeg_bytes(smooth_rgb(height, width, seed), **kwargs))
        return path

    return _make


@pytest.fixture
def jpeg_folder(tmp_path: Path) -> Path:
    """An ImageFolder of 8 tiny 32x32 JPEGs in two classes: root/{cat,dog}/{0..3}.jpg."""
    root = tmp_path / "folder"
    for c, cls in enumerate(("cat", "dog")):
        (root / cls).mkdir(parents=True)
        for i in range(4):
            (root / cls / f"{i}.jpg").write_bytes(jpeg_bytes(smooth_rgb(32, 32, seed=10 * c + i)))
    return root


@pytest.fixture(scope="module")
def dct_teacher():
    """helpers.tiny_dct_teacher(), built once per test module (tests must not change it)."""
    from helpers import tiny_dct_teacher

    return tiny_dct_teacher()


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """One intra-op thread: the tiny test models are overhead-bound, and on a loaded 2-core machine
    (CI, or other jobs) two spinning OpenMP threads made them ~100x slower."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
