"""Shared fixtures: tiny JPEG files written with Pillow into tmp_path (the functions behind them: helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import jpeg_bytes, smooth_rgb


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


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory):
    """`run_demo` at tiny settings (2 epochs, 12 images a class), run once per session: the DemoReport of a
    run folder holding a training run, an INT8 checkpoint, FP32/INT8 ONNX, evaluations and profiles.
    Tests may add files beside (a Triton repository) but must not change what is there."""
    from dctq.cli.demo_pipeline import run_demo

    return run_demo(tmp_path_factory.mktemp("tiny_demo") / "demo", epochs=2, per_class=12)
