"""Pixel-space training augmentation for coefficient datasets: decode, pad + crop + flip, re-encode.

On the block grid a translation moves whole MCUs (16 px for 4:2:0): on a 32x32 CIFAR image that
is half the picture, so the coefficient-domain crop blanks most of it and only flips are cheap and
exact. The standard CIFAR augmentation (reflect-pad 4, random 32x32 crop, flip) needs pixels, so
this decodes the file with Pillow, moves the pixels and re-encodes with the file's *own* quant
tables and chroma subsampling (or at a QSAM re-compression quality), then the reader takes the
coefficients as usual. Cost: one decode + one encode per training sample, in the loader workers.

The re-encoded blocks are compressed twice; with the same tables, blocks that were not moved
are nearly unchanged, moved blocks gain a second round of quantization noise at the same step
sizes, the "double compression" validation files never see. Measured on CIFAR-10
(docs/benchmarks.md) the augmentation is worth far more than that mismatch costs.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, JpegImagePlugin

from ..common.errors import CorruptJpegError, DctqError, NotAJpegError
from .recompress import check_quality, check_readable

# Pillow's get_sampling codes -> the `subsampling` save argument (same codes; -1 = unknown layout).
_KNOWN_SAMPLING = (0, 1, 2)


@dataclass(frozen=True)
class PixelCropFlip:
    """Reflect-pad `pad` px, random crop back to the original size, horizontal flip with `flip_p`.

    `__call__(jpeg, rng, quality=None) -> bytes`: the augmented image as a new baseline JPEG, with
    the source's quant tables and subsampling when `quality` is None, else Pillow's IJG tables at
    `quality` (4:2:0), as `recompress` writes them.

    Raises (from __call__):
        NotAJpegError: the bytes are not a JPEG. JpegError subclasses: what the coefficient reader refuses
            (recompress.check_readable), or Pillow cannot decode.
        DctqError: a bad quality, or a source subsampling Pillow cannot write back (e.g. 4:1:1).
    """

    pad: int = 4
    flip_p: float = 0.5

    def __post_init__(self) -> None:
        if self.pad < 0 or not 0.0 <= self.flip_p <= 1.0:
            raise DctqError(
                f"PixelCropFlip needs pad >= 0 and 0 <= flip_p <= 1, got {self.pad}, {self.flip_p}"
            )

    def __call__(self, jpeg: bytes, rng: np.random.Generator, quality: int | None = None) -> bytes:
        if not jpeg.startswith(b"\xff\xd8"):
            raise NotAJpegError(f"cannot augment: input does not start with a JPEG SOI marker ({jpeg[:4]!r})")
        if quality is not None:
            quality = check_quality(quality)
        check_readable(jpeg)  # what the reader refuses is not augmented into a clean file
        try:
            with Image.open(io.BytesIO(jpeg)) as src:
                src.load()
                if src.mode not in ("L", "RGB"):
                    raise DctqError(
                        f"cannot augment a {src.mode} JPEG: only grayscale and YCbCr files are supported"
                    )
                tables = src.quantization
                sampling = JpegImagePlugin.get_sampling(src)
                pixels = np.asarray(src)
        except (OSError, ValueError, SyntaxError) as exc:  # Pillow's decode errors
            raise CorruptJpegError(f"cannot augment: Pillow failed to decode the JPEG ({exc})") from exc
        out = Image.fromarray(self._move(pixels, rng))
        kwargs: dict[str, object] = {}
        if quality is not None:
            kwargs["quality"] = quality
            if out.mode != "L":
                kwargs["subsampling"] = 2
        else:
            kwargs["qtables"] = [tables[k] for k in sorted(tables)]
            if out.mode != "L":
                if sampling not in _KNOWN_SAMPLING:
                    raise DctqError("cannot augment: the file's chroma subsampling cannot be written back")
                kwargs["subsampling"] = sampling
        buffer = io.BytesIO()
        out.save(buffer, format="JPEG", **kwargs)
        return buffer.getvalue()

    def _move(self, pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = pixels.shape[:2]
        if self.pad:
            widths = ((self.pad, self.pad), (self.pad, self.pad)) + ((0, 0),) * (pixels.ndim - 2)
            padded = np.pad(pixels, widths, mode="reflect")
            top = int(rng.integers(2 * self.pad + 1))
            left = int(rng.integers(2 * self.pad + 1))
            pixels = padded[top : top + h, left : left + w]
        if rng.random() < self.flip_p:
            pixels = pixels[:, ::-1]
        return np.ascontiguousarray(pixels)
