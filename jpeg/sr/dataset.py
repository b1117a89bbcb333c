"""SR data sets: HR images with their bicubic LR versions, random training patches, whole evaluation images.

    images = load_pairs(resolve_images("sr"), scale=4)           # HR modcropped, LR = imresize(HR, 1/4)
    train = SrPatches(images, scale=4, patch_size=96, length=8000)  # random 96x96 HR / 24x24 LR patches
    val = SrImages(load_pairs(resolve_images("set5"), scale=4))  # whole images, batch size 1

Samples are `SrSample`s: x = LR [C, h, w], target = HR [C, s*h, s*w], float32 in [0, 1], collated by
jpeg.dataset.collate_samples into {"x": [N, C, h, w], "target": [N, C, H, W], "index": [N]}; the model
input is "x" (jpeg.batch.model_inputs), as for RGB classifiers.

Training patches (EDSR's recipe): an image drawn uniformly, a patch position drawn uniformly on the LR
grid (so HR and LR stay aligned), then a random horizontal flip, vertical flip and transpose (90-degree
rotations), each with probability 1/2, from the dataset's per-worker Generator (reproducible, as
jpeg.dataset.FolderDataset).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from ...common.errors import DataError
from .images import list_images, modcrop, read_image
from .resize import bicubic_downscale

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SrPair:
    """One HR image (uint8 [H, W, C], sides multiples of `scale`) and its LR version [H/s, W/s, C]."""

    name: str
    hr: np.ndarray
    lr: np.ndarray
    cropped: bool = False
    """The HR file's sides were not multiples of the scale and were cropped (modcrop)."""


@dataclasses.dataclass
class SrSample:
    """One LR/HR pair as tensors: x [C, h, w], target [C, s*h, s*w] float32 in [0, 1]; index of the image."""

    x: torch.Tensor = dataclasses.field(metadata={"what": "LR patch / image"})
    target: torch.Tensor = dataclasses.field(metadata={"what": "HR patch / image"})
    index: int = 0


def load_pairs(
    folder: Path | str,
    scale: int,
    channels: int = 3,
    files: Sequence[Path] | None = None,
    *,
    gray: str = "error",
) -> list[SrPair]:
    """HR images of `folder` (or just `files`) with their LR versions: read_image (grayscale files refused
    or, with gray="rgb", read as RGB), modcrop to multiples of `scale` (the SR literature's convention;
    cropped files are logged and marked), bicubic_downscale.

    Raises DataError for an empty folder or an unusable image (read_image names it and the fix).
    """
    paths = list(files) if files is not None else list_images(folder)
    if not paths:
        raise DataError(f"{folder} holds no image for super-resolution")
    pairs = []
    for path in paths:
        image = read_image(path, channels, gray)
        hr = modcrop(image, scale)
        cropped = hr.shape != image.shape
        if cropped:
            logger.info(
                "%s: %dx%d is not a multiple of x%d; cropped to %dx%d",
                path,
                image.shape[1],
                image.shape[0],
                scale,
                hr.shape[1],
                hr.shape[0],
            )
        name = str(Path(path).relative_to(folder)) if files is None else Path(path).name
        pairs.append(SrPair(name, hr, bicubic_downscale(hr, scale), cropped))
    return pairs


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, C] -> float32 [C, H, W] in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255)


class _Seeded(Dataset):
    """The per-process Generator of jpeg.dataset.FolderDataset: per loader worker from its torch seed,
    else from reseed(seed)."""

    def __init__(self, seed: int | None = None) -> None:
        self._seed = seed
        self._rng: np.random.Generator | None = None
        self._key: tuple | None = None

    def reseed(self, seed: int | None) -> None:
        self._seed, self._rng = seed, None

    def rng(self) -> np.random.Generator:
        info = get_worker_info()
        key = ("worker", info.seed) if info is not None else ("main", self._seed)
        if self._rng is None or self._key != key:
            seed = (
                info.seed
                if info is not None
                else (self._seed if self._seed is not None else torch.initial_seed())
            )
            self._rng, self._key = np.random.default_rng(seed), key
        return self._rng


class SrPatches(_Seeded):
    """`length` random training patches per epoch (see module docstring); `patch_size` is the HR side.

    Raises DataError for a patch size that is not a positive multiple of `scale`, or an image smaller
    than the patch (naming it and the fix) unless `skip_small` leaves such images out (logged; `skipped`
    names them) and some image remains.
    """

    def __init__(
        self,
        pairs: Sequence[SrPair],
        *,
        scale: int,
        patch_size: int,
        length: int,
        augment: bool = True,
        skip_small: bool = False,
        seed: int | None = None,
    ) -> None:
        super().__init__(seed)
        if not pairs:
            raise DataError("no training images for SR patches")
        if patch_size < scale or patch_size % scale:
            raise DataError(f"--patch-size {patch_size} must be a positive multiple of the scale {scale}")
        if length < 1:
            raise DataError(f"SR patches per epoch must be >= 1, got {length}")
        small = [p for p in pairs if min(p.hr.shape[:2]) < patch_size]
        if small and (not skip_small or len(small) == len(pairs)):
            p = small[0]
            raise DataError(
                f"{p.name} ({p.hr.shape[1]}x{p.hr.shape[0]} after cropping to x{scale}) is smaller than the "
                f"{patch_size}x{patch_size} training patch ({len(small)} of {len(pairs)} image(s)); use a smaller "
                "--patch-size, remove the small images"
                + (
                    " (none is large enough)"
                    if skip_small
                    else ", or pass --skip-small-images to leave them out"
                )
            )
        if small:
            logger.warning(
                "left out %d image(s) smaller than the %d px patch: %s",
                len(small),
                patch_size,
                ", ".join(p.name for p in small[:5]),
            )
            pairs = [p for p in pairs if min(p.hr.shape[:2]) >= patch_size]
        self.skipped = [p.name for p in small]
        self.pairs, self.scale, self.patch_size, self.length, self.augment = (
            list(pairs),
            scale,
            patch_size,
            length,
            augment,
        )

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> SrSample:
        rng = self.rng()
        k = int(rng.integers(len(self.pairs)))
        pair = self.pairs[k]
        lp = self.patch_size // self.scale
        h, w = pair.lr.shape[:2]
        top, left = int(rng.integers(h - lp + 1)), int(rng.integers(w - lp + 1))
        lr = pair.lr[top : top + lp, left : left + lp]
        s = self.scale
        hr = pair.hr[s * top : s * (top + lp), s * left : s * (left + lp)]
        if self.augment:
            hflip, vflip, transpose = rng.random(3) < 0.5
            if hflip:
                lr, hr = lr[:, ::-1], hr[:, ::-1]
            if vflip:
                lr, hr = lr[::-1], hr[::-1]
            if transpose:
                lr, hr = lr.transpose(1, 0, 2), hr.transpose(1, 0, 2)
        return SrSample(to_tensor(lr), to_tensor(hr), k)


SSIM_WINDOW = 11
"""Side of the SSIM window (models.sr.metrics): an evaluation image needs that much after its border crop."""


class SrImages(Dataset):
    """Whole LR/HR image pairs in order (evaluation; sizes differ, so batch size 1).

    Raises DataError, naming the image, when one is too small to be scored at `scale`: PSNR and SSIM crop
    `scale` border pixels and SSIM needs an 11x11 window after that.
    """

    def __init__(self, pairs: Sequence[SrPair], scale: int = 1) -> None:
        if not pairs:
            raise DataError("no SR evaluation images")
        need = SSIM_WINDOW + 2 * scale
        for p in pairs:
            if min(p.hr.shape[:2]) < need:
                raise DataError(
                    f"{p.name} ({p.hr.shape[1]}x{p.hr.shape[0]}) is smaller than the {need}x{need} pixels an x{scale} "
                    "evaluation needs (an 11x11 SSIM window after the border crop); remove it from the folder"
                )
        self.pairs = list(pairs)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.pairs]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> SrSample:
        pair = self.pairs[index]
        return SrSample(to_tensor(pair.lr), to_tensor(pair.hr), index)


def split_pairs(pairs: Sequence[SrPair], val_fraction: float, seed: int) -> tuple[list[SrPair], list[SrPair]]:
    """(train, val): round(val_fraction * n) images (at least 1) drawn with `seed` for validation.

    Raises DataError when fewer than two images are given or the fraction leaves no training image.
    """
    n = len(pairs)
    k = max(1, round(val_fraction * n))
    if n < 2 or k >= n:
        raise DataError(
            f"{n} SR image(s) cannot be split into training and validation with --val-fraction {val_fraction}; "
            "give more images"
        )
    chosen = set(np.random.default_rng(seed).choice(n, size=k, replace=False).tolist())
    return [p for i, p in enumerate(pairs) if i not in chosen], [
        p for i, p in enumerate(pairs) if i in chosen
    ]
