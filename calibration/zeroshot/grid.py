"""A PNG contact sheet of synthetic images: one row per class, decoded as a JPEG decoder would show them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ...common.errors import DataError
from ...common.files import atomic_path
from ...jpeg.coefficients import JpegCoefficients
from ...jpeg.pixels import to_pixels
from ...jpeg.rgb import CIFAR10_MEAN, CIFAR10_STD
from .data import SyntheticData

_LABEL_WIDTH = 96
_GAP = 2


def decode_samples(samples: SyntheticData, index: Sequence[int]) -> np.ndarray:
    """RGB pixels of the samples at `index`: [n, H, W, 3] uint8.

    DCT samples go through jpeg.pixels.to_pixels (libjpeg's decode: dequantize, IDCT, fancy chroma
    upsampling, YCbCr->RGB); RGB samples are de-normalised with the CIFAR-10 mean/std they were made in.
    """
    out = []
    if samples.kind == "dct":
        y, cbcr, qt = samples.tensors["y"], samples.tensors["cbcr"], samples.tensors["qt"]
        for i in index:
            coefs = JpegCoefficients(
                y=y[i].numpy(),
                cbcr=cbcr[i].numpy(),
                qt=qt[i].numpy().astype(np.uint16),
                height=8 * int(y.shape[-2]),
                width=8 * int(y.shape[-1]),
                subsampling="4:2:0",
                progressive=False,
                source="<synthetic>",
            )
            out.append(to_pixels(coefs))
    else:
        mean = np.asarray(CIFAR10_MEAN, dtype=np.float32).reshape(3, 1, 1)
        std = np.asarray(CIFAR10_STD, dtype=np.float32).reshape(3, 1, 1)
        x = samples.tensors["x"]
        for i in index:
            rgb = (x[i].numpy() * std + mean) * 255.0
            out.append(np.clip(np.rint(rgb), 0, 255).astype(np.uint8).transpose(1, 2, 0))
    if not out:
        return np.zeros((0, 0, 0, 3), dtype=np.uint8)
    return np.stack(out)


def synthetic_grid_png(
    samples: SyntheticData,
    class_names: Sequence[str] | None,
    path: Path | str,
    *,
    per_class: int = 8,
    max_classes: int = 10,
    min_side: int = 64,
) -> Path:
    """Write a grid PNG: up to `max_classes` rows (classes in label order), `per_class` images each,
    the class name on the left; images smaller than `min_side` pixels are enlarged (nearest neighbour).

    class_names: row titles (None: the names stored with the samples). Returns the path.
    Raises DataError when there are no samples or per_class / max_classes < 1.
    """
    if len(samples) == 0:
        raise DataError("no synthetic samples to draw")
    if per_class < 1 or max_classes < 1:
        raise DataError(f"per_class and max_classes must be >= 1, got {per_class}, {max_classes}")
    names = list(class_names) if class_names is not None else list(samples.class_names)
    labels = samples.tensors["label"]
    classes = [c for c in sorted(set(labels.tolist()))][:max_classes]
    rows = [(labels == c).nonzero().flatten()[:per_class].tolist() for c in classes]
    first = decode_samples(samples, rows[0][:1])[0]
    h, w = first.shape[:2]
    factor = max(1, -(-min_side // max(h, w)))
    th, tw = h * factor, w * factor
    sheet = Image.new(
        "RGB", (_LABEL_WIDTH + per_class * (tw + _GAP), len(rows) * (th + _GAP)), (255, 255, 255)
    )
    draw = ImageDraw.Draw(sheet)
    for r, (c, index) in enumerate(zip(classes, rows, strict=True)):
        top = r * (th + _GAP)
        title = names[c] if 0 <= c < len(names) else str(c)
        draw.text((4, top + th // 2 - 6), title[:14], fill=(0, 0, 0))
        for k, pixels in enumerate(decode_samples(samples, index)):
            tile = Image.fromarray(pixels).resize((tw, th), Image.NEAREST)
            sheet.paste(tile, (_LABEL_WIDTH + k * (tw + _GAP), top))
    path = Path(path)
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")
    return path
