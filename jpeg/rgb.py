"""The pixel path for RGB baseline models: the same folders, quality policy and seeding as
`JpegFolder`, decoded to normalised RGB tensors by Pillow.

Augmentation follows QSAM (METHODS.md section 1): reflect-pad 4, random crop back to the image
size, horizontal flip, all after JPEG (re-)compression; then normalisation with CIFAR-10's mean/std
by default. The quant tables of the (re-)compressed file travel with the pixels so QAC and QABN
can be used by RGB models too.

One preprocessing for every RGB consumer (this dataset, deploy/predict.py, and the GPU input path of
deploy/profiling/gpu_input.py): `decode_rgb`, then `fit_pixels` (centre crop, or place a smaller image
in the middle of the input) and `normalize_pixels` ((p/255 - mean) / std, and zero around a placed
image, i.e. padding with the mean colour). `preprocess_rgb` is the two for one image on the CPU; the
GPU path uploads the fitted uint8 pixels and runs `normalize_pixels` on the device.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..common.errors import CorruptJpegError, DataError, JpegError, NotAJpegError
from .dataset import FolderDataset, error_with_path, read_file_bytes
from .limits import check_pixel_limit
from .quality import estimate_ijg_quality
from .recompress import QualityPolicy
from .samples import Sample

# QSAM's normalisation [C]: mean (125.3, 123.0, 113.9)/255, std (63.0, 62.1, 66.7)/255.
CIFAR10_MEAN = (125.3 / 255, 123.0 / 255, 113.9 / 255)
CIFAR10_STD = (63.0 / 255, 62.1 / 255, 66.7 / 255)
_NUMPY_PAD_MODES = {"reflect": "reflect", "constant": "constant", "replicate": "edge"}


def pillow_quant_tables(img: Image.Image) -> np.ndarray:
    """[3, 64] float32 quant tables (Y, Cb, Cr) of an opened JPEG, natural order (Pillow >= 8
    returns natural order). Gray files repeat the luma table, as the coefficient reader does.

    The table of each component comes from the frame header (`img.layer`: id, h, v, table),
    falling back to the usual assignment (Y: 0, Cb/Cr: 1) when Pillow does not expose it.
    """
    tables = img.quantization
    layer = getattr(img, "layer", None)
    if layer:
        ids = [int(component[3]) for component in layer[:3]]
    else:
        ids = [0, 1, 1] if len(tables) > 1 else [0]
    ids = (ids * 3)[:3] if len(ids) == 1 else ids
    return np.array([list(tables[i]) for i in ids], dtype=np.float32).reshape(3, 64)


Box = tuple[int, int, int, int]
"""(top, left, height, width): where an image lies inside the input it was fitted to."""


def decode_rgb(data: bytes, source: Path | str = "<bytes>") -> tuple[np.ndarray, np.ndarray]:
    """(rgb [H, W, 3] uint8, qt [3, 64] float32) of JPEG bytes, decoded by Pillow (the RGB models' decoder).

    Raises:
        NotAJpegError / CorruptJpegError: naming `source`. UnsupportedJpegError: more pixels than the
        limit (jpeg.limits), refused from the header before Pillow decodes anything.
    """
    if not data.startswith(b"\xff\xd8"):
        raise NotAJpegError(f"{source} is not a JPEG file (starts with {data[:4]!r})")
    check_pixel_limit(data, str(source))
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            qt = pillow_quant_tables(img)
            rgb = np.asarray(img.convert("RGB"))
    except (OSError, ValueError, SyntaxError) as exc:
        raise CorruptJpegError(f"{source}: Pillow cannot decode it ({exc})") from exc
    return rgb, qt


def fit_pixels(
    rgb: np.ndarray, size: int | tuple[int, int], out: np.ndarray | None = None
) -> tuple[np.ndarray, Box]:
    """Centre-crop `rgb` [H, W, C] uint8 to `size` pixels, or place it in the middle where it is smaller.

    out: a [S, S', C] array to fill (the GPU path's pinned host buffer); else a new one. What lies
    around a placed image is left black here and becomes the mean colour in `normalize_pixels`.
    Returns (the fitted pixels, the image's box inside them).
    """
    sh, sw = (size, size) if isinstance(size, int) else size
    h, w = rgb.shape[:2]
    ch, cw = min(h, sh), min(w, sw)
    sy, sx, dy, dx = (h - ch) // 2, (w - cw) // 2, (sh - ch) // 2, (sw - cw) // 2
    if out is None:
        out = np.zeros((sh, sw, rgb.shape[2]), dtype=rgb.dtype)
    elif (ch, cw) != (sh, sw):
        out[...] = 0
    out[dy : dy + ch, dx : dx + cw] = rgb[sy : sy + ch, sx : sx + cw]
    return out, (dy, dx, ch, cw)


def normalize_pixels(
    pixels: Any, mean: Any = CIFAR10_MEAN, std: Any = CIFAR10_STD, boxes: Sequence[Box | None] | None = None
) -> Any:
    """(p / 255 - mean) / std per channel of pixels [N, H, W, 3] uint8 -> [N, 3, H, W] float32, zero
    outside each image's box (the mean colour: zero padding after normalising).

    Works on numpy arrays and on torch tensors on any device (the same float32 operations, so the same
    numbers); mean and std may be given as tensors already on that device.
    """
    if isinstance(pixels, torch.Tensor):
        x = pixels.permute(0, 3, 1, 2).to(torch.float32).div_(255.0)
        m = torch.as_tensor(mean, dtype=torch.float32, device=x.device).reshape(1, 3, 1, 1)
        s = torch.as_tensor(std, dtype=torch.float32, device=x.device).reshape(1, 3, 1, 1)
    else:
        x = pixels.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
        m = np.asarray(mean, dtype=np.float32).reshape(1, 3, 1, 1)
        s = np.asarray(std, dtype=np.float32).reshape(1, 3, 1, 1)
    x = (x - m) / s
    height, width = x.shape[-2:]
    for i, box in enumerate(boxes or ()):
        if box is None or box == (0, 0, height, width):
            continue
        top, left, h, w = box
        x[i, :, :top] = 0
        x[i, :, top + h :] = 0
        x[i, :, :, :left] = 0
        x[i, :, :, left + w :] = 0
    return x


def preprocess_rgb(
    rgb: np.ndarray, size: int | None, mean: Any = CIFAR10_MEAN, std: Any = CIFAR10_STD
) -> np.ndarray:
    """One image as an RGB model's input: [H, W, 3] uint8 -> [3, S, S] float32, normalised, centre
    cropped or padded with the mean colour to `size` (None: the image's own size)."""
    if size is None:
        return normalize_pixels(rgb[None], mean, std)[0]
    fitted, box = fit_pixels(rgb, size)
    return normalize_pixels(fitted[None], mean, std, [box])[0]


@dataclass(frozen=True)
class RgbSample:
    """One sample of an RgbJpegFolder.

    Attributes:
        x: [3, H, W] float32 normalised RGB; qt: [3, 64] float32 quant tables (natural order);
        label: class index; quality: re-compression quality, estimated file quality, or -1.
    """

    x: torch.Tensor = field(metadata={"what": "image"})
    qt: torch.Tensor
    label: int
    quality: int


class RgbJpegFolder(FolderDataset):
    """An ImageFolder of JPEG files decoded to RGB (see FolderDataset for root/qualities/train/samples).

    Args:
        input_size: square output in pixels; images are centre-cropped or zero-padded (after
            normalisation, so padding is the mean colour) to it. None keeps each image's size.
        augment: flip + pad/random crop; defaults to `train`.
        pad: pixels padded on each side before the random crop (QSAM: 4); pad_mode: "reflect"
            (QSAM), "constant" or "replicate".
        flip_p: probability of a horizontal flip.
        mean, std: per-channel normalisation of [0, 1] pixels (default CIFAR-10's, from QSAM).

    Raises:
        DataError: bad layout or arguments. `__getitem__` raises a JpegError naming a bad file.
    """

    def __init__(
        self,
        root: Path | str,
        *,
        input_size: int | None = None,
        qualities: QualityPolicy | None = None,
        train: bool,
        augment: bool | None = None,
        pad: int = 4,
        pad_mode: str = "reflect",
        flip_p: float = 0.5,
        mean: Sequence[float] = CIFAR10_MEAN,
        std: Sequence[float] = CIFAR10_STD,
        samples: Sequence[Sample] | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(root, qualities=qualities, train=train, samples=samples, seed=seed)
        if input_size is not None and (not isinstance(input_size, int) or input_size <= 0):
            raise DataError(f"input_size must be a positive number of pixels, got {input_size!r}")
        if pad < 0 or pad_mode not in _NUMPY_PAD_MODES or not 0 <= flip_p <= 1:
            raise DataError(
                f"bad augmentation: pad={pad} (>= 0), pad_mode={pad_mode!r} (reflect/constant/replicate), "
                f"flip_p={flip_p} (in [0, 1])"
            )
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise DataError(f"mean and std need 3 entries and std > 0, got mean={mean}, std={std}")
        self.input_size = input_size
        self.augment = train if augment is None else augment
        self.pad, self.pad_mode, self.flip_p = pad, pad_mode, flip_p
        self.mean = np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
        self.std = np.asarray(std, dtype=np.float32).reshape(3, 1, 1)

    def _augment(self, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Flip, then pad and random crop back to the size, on [H, W, 3] uint8 (numpy: per-sample
        torch ops on tiny images cost milliseconds in thread overhead)."""
        if rng.random() < self.flip_p:
            rgb = rgb[:, ::-1]
        if self.pad:
            h, w = rgb.shape[:2]
            p = self.pad
            rgb = np.pad(rgb, ((p, p), (p, p), (0, 0)), mode=_NUMPY_PAD_MODES[self.pad_mode])
            top, left = int(rng.integers(2 * p + 1)), int(rng.integers(2 * p + 1))
            rgb = rgb[top : top + h, left : left + w]
        return rgb

    def __getitem__(self, index: int) -> RgbSample:
        path, data, quality = self.load(index)
        try:
            rgb, qt = decode_rgb(read_file_bytes(path) if data is None else data, path)
        except JpegError as exc:
            raise error_with_path(exc, path) from exc
        if quality is None:
            gray = bool((qt[1:] == qt[0]).all())
            quality, _ = estimate_ijg_quality(qt[0], None if gray else qt[1])
        if self.augment:
            rgb = self._augment(rgb, self.rng())
        x = preprocess_rgb(rgb, self.input_size, self.mean, self.std)
        return RgbSample(
            x=torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
            qt=torch.from_numpy(qt),
            label=self.samples[index].label,
            quality=-1 if quality is None else int(quality),
        )
