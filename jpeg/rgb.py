"""The pixel path for RGB baseline models: the same folders, quality policy and seeding as
`JpegFolder`, decoded to normalised RGB tensors by Pillow.

Augmentation follows QSAM (METHODS.md section 1): reflect-pad 4, random crop back to the image
size, horizontal flip, all after JPEG (re-)compression; then normalisation with CIFAR-10's mean/std
by default. The quant tables of the (re-)compressed file travel with the pixels so QAC and QABN
can be used by RGB models too.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..common.errors import CorruptJpegError, DataError, JpegError, NotAJpegError
from .dataset import FolderDataset, error_with_path, read_file_bytes, stack_equal
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


@dataclass(frozen=True)
class RgbSample:
    """One sample of an RgbJpegFolder.

    Attributes:
        x: [3, H, W] float32 normalised RGB; qt: [3, 64] float32 quant tables (natural order);
        label: class index; quality: re-compression quality, estimated file quality, or -1.
    """

    x: torch.Tensor
    qt: torch.Tensor
    label: int
    quality: int

    @staticmethod
    def collate(batch: Sequence[RgbSample]) -> dict[str, torch.Tensor]:
        return collate_rgb(batch)


def collate_rgb(batch: Sequence[RgbSample]) -> dict[str, torch.Tensor]:
    """Stack RgbSamples: x [N, 3, H, W] float32, qt [N, 3, 64] float32, label [N], quality [N] int64.

    Raises:
        DataError: image sizes differ (set input_size).
    """
    return {
        "x": stack_equal([s.x for s in batch], "image"),
        "qt": torch.stack([s.qt for s in batch]),
        "label": torch.tensor([s.label for s in batch], dtype=torch.int64),
        "quality": torch.tensor([s.quality for s in batch], dtype=torch.int64),
    }


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

    def _decode(self, path: Path, data: bytes) -> tuple[np.ndarray, np.ndarray]:
        """-> (rgb [H, W, 3] uint8, qt [3, 64] float32)."""
        if not data.startswith(b"\xff\xd8"):
            raise NotAJpegError(f"{path} is not a JPEG file (starts with {data[:4]!r})")
        try:
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                qt = pillow_quant_tables(img)
                rgb = np.asarray(img.convert("RGB"))
        except (OSError, ValueError, SyntaxError) as exc:
            raise CorruptJpegError(f"{path}: Pillow cannot decode it ({exc})") from exc
        return rgb, qt

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
            rgb, qt = self._decode(path, read_file_bytes(path) if data is None else data)
        except JpegError as exc:
            raise error_with_path(exc, path) from exc
        if quality is None:
            gray = bool((qt[1:] == qt[0]).all())
            quality, _ = estimate_ijg_quality(qt[0], None if gray else qt[1])
        if self.augment:
            rgb = self._augment(rgb, self.rng())
        x = (rgb.transpose(2, 0, 1).astype(np.float32) / 255.0 - self.mean) / self.std
        if self.input_size is not None:
            x = _center_crop_or_pad(x, self.input_size)
        return RgbSample(
            x=torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
            qt=torch.from_numpy(qt),
            label=self.samples[index].label,
            quality=-1 if quality is None else int(quality),
        )


def _center_crop_or_pad(x: np.ndarray, size: int) -> np.ndarray:
    """[C, H, W] -> [C, size, size], centred, zero-padded where the image is smaller."""
    out = np.zeros((x.shape[0], size, size), dtype=x.dtype)
    h, w = x.shape[-2:]
    ch, cw = min(h, size), min(w, size)
    sy, sx = (h - ch) // 2, (w - cw) // 2
    dy, dx = (size - ch) // 2, (size - cw) // 2
    out[:, dy : dy + ch, dx : dx + cw] = x[:, sy : sy + ch, sx : sx + cw]
    return out
