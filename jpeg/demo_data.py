"""A built-in toy data set: procedural JPEGs in ImageFolder layout, for `dctq demo` and smoke tests.

Four classes whose difference lives in the frequency content (horizontal stripes, vertical stripes,
checkerboards, smooth blobs), with random colours, periods, phases, noise and JPEG quality, so a DCT
model must learn something real from the coefficients, yet a few CPU seconds of training suffice.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from ..common.errors import DataError

DEMO_CLASSES = ("hstripes", "vstripes", "checker", "blobs")


def _pattern(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """[size, size] float in [0, 1]."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    period = rng.uniform(4.0, 12.0)
    phase = rng.uniform(0, 2 * np.pi)
    if kind == "hstripes":
        return 0.5 + 0.5 * np.sin(2 * np.pi * yy / period + phase)
    if kind == "vstripes":
        return 0.5 + 0.5 * np.sin(2 * np.pi * xx / period + phase)
    if kind == "checker":
        return 0.5 + 0.5 * np.sin(2 * np.pi * xx / period + phase) * np.sin(2 * np.pi * yy / period)
    centres = rng.uniform(0, size, size=(3, 2))
    field = sum(np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (size / 5) ** 2)) for cy, cx in centres)
    return np.clip(field, 0, 1)


def demo_image(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """[size, size, 3] uint8 RGB image of class `kind` (one of DEMO_CLASSES)."""
    if kind not in DEMO_CLASSES:
        raise DataError(f"unknown demo class {kind!r}; choose from {', '.join(DEMO_CLASSES)}")
    base = _pattern(kind, size, rng)[..., None]
    fg, bg = rng.uniform(0, 255, size=(2, 3))
    rgb = bg + (fg - bg) * base + rng.normal(0, 8, size=(size, size, 3))
    return np.clip(rgb, 0, 255).astype(np.uint8)


def make_demo_folder(
    root: Path, *, per_class: int = 64, size: int = 32, qualities: tuple[int, int] = (50, 95), seed: int = 0
) -> Path:
    """Write `per_class` JPEGs per class into root/<class>/<n>.jpg (4:2:0, random IJG quality).

    Returns root. Existing files of the same names are overwritten; nothing else in root is touched.
    Raises DataError when size is not a positive multiple of 16 or per_class < 1.
    """
    if size < 16 or size % 16:
        raise DataError(f"demo image size must be a positive multiple of 16 (one MCU), got {size}")
    if per_class < 1:
        raise DataError(f"--per-class must be at least 1, got {per_class}")
    rng = np.random.default_rng(seed)
    root = Path(root)
    for kind in DEMO_CLASSES:
        folder = root / kind
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            buf = io.BytesIO()
            quality = int(rng.integers(qualities[0], qualities[1] + 1))
            Image.fromarray(demo_image(kind, size, rng)).save(
                buf, format="JPEG", quality=quality, subsampling=2
            )
            (folder / f"{i:04d}.jpg").write_bytes(buf.getvalue())
    return root
