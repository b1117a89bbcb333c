"""Augmentations in the coefficient domain, on the MCU (16 px) grid.

A transform is a small callable `t(y, cbcr, rng) -> (y, cbcr)` on one sample's planes:
`y: [64, Hb, Wb]` and `cbcr: [128, Hb/2, Wb/2]` (numpy or torch, integer valued; cbcr may be None
for grayscale where the geometry allows it), drawing any randomness from the numpy Generator it is
given, so a dataset that owns the Generator makes the whole pipeline reproducible. The datasets seed
that Generator per DataLoader worker from torch's per-worker seed (see `dataset.worker_rng`).

The pixel-space pipeline of QSAM (reflect-pad 4, random crop 32, horizontal flip) becomes here: pad
one MCU of zero blocks on every side, random MCU-aligned crop back to the original grid, and the
DCT-domain flip (block order reversed, odd horizontal frequencies negated). Zero blocks decode to
flat mid-grey rather than a reflection: the block grid has no exact reflect padding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..common.errors import DctqError
from .geometry import center_crop_or_pad, hflip, random_block_crop

# (y, cbcr): one sample's luma and chroma planes.
Planes = tuple[Any, Any]
CoefTransform = Callable[[Any, Any, np.random.Generator], Planes]


def _grid(y: Any) -> tuple[int, int]:
    return int(y.shape[-2]), int(y.shape[-1])


@dataclass(frozen=True)
class RandomHFlip:
    """Flip horizontally in the DCT domain with probability `p` (geometry.hflip)."""

    p: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.p <= 1.0:
            raise DctqError(f"RandomHFlip probability must be in [0, 1], got {self.p}")

    def __call__(self, y: Any, cbcr: Any, rng: np.random.Generator) -> Planes:
        if rng.random() < self.p:
            return hflip(y, cbcr)
        return y, cbcr


@dataclass(frozen=True)
class RandomPadCrop:
    """Pad `pad_mcus` MCUs of zero blocks on every side, then crop a random MCU-aligned window
    of the original grid size (the block-grid form of "pad 4, random crop 32").

    With the default one MCU (16 px) on a 32x32 CIFAR image the window shifts by -16, 0 or +16 px
    on each axis: coarser than the pixel version, the finest shift the 4:2:0 grid allows exactly.
    """

    pad_mcus: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.pad_mcus, int) or self.pad_mcus < 0:
            raise DctqError(f"RandomPadCrop pad_mcus must be a non-negative integer, got {self.pad_mcus!r}")

    def __call__(self, y: Any, cbcr: Any, rng: np.random.Generator) -> Planes:
        if self.pad_mcus == 0:
            return y, cbcr
        hb, wb = _grid(y)
        pad = 2 * self.pad_mcus  # luma blocks per MCU side
        y, cbcr = center_crop_or_pad(y, cbcr, hb + 2 * pad, wb + 2 * pad)
        return random_block_crop(y, cbcr, hb, wb, rng)


@dataclass(frozen=True)
class CenterCropPad:
    """Centre-crop or zero-pad to the model's luma grid (out_hb, out_wb), both even."""

    out_hb: int
    out_wb: int

    def __post_init__(self) -> None:
        for name in ("out_hb", "out_wb"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0 or value % 2:
                raise DctqError(f"CenterCropPad {name} must be a positive even block count, got {value!r}")

    @classmethod
    def for_input_size(cls, input_size: int) -> CenterCropPad:
        """The crop for a square model input of `input_size` pixels (a multiple of 16)."""
        return cls(*grid_for_input_size(input_size))

    def __call__(self, y: Any, cbcr: Any, rng: np.random.Generator) -> Planes:
        if _grid(y) == (self.out_hb, self.out_wb):
            return y, cbcr
        return center_crop_or_pad(y, cbcr, self.out_hb, self.out_wb)


@dataclass(frozen=True)
class Compose:
    """Apply `transforms` in order, all drawing from the same Generator."""

    transforms: tuple[CoefTransform, ...]

    def __init__(self, transforms: Sequence[CoefTransform]) -> None:
        object.__setattr__(self, "transforms", tuple(transforms))

    def __call__(self, y: Any, cbcr: Any, rng: np.random.Generator) -> Planes:
        for t in self.transforms:
            y, cbcr = t(y, cbcr, rng)
        return y, cbcr


def grid_for_input_size(input_size: int) -> tuple[int, int]:
    """(Hb, Wb) luma blocks of a square `input_size`-pixel input.

    Raises:
        DctqError: input_size is not a positive multiple of 16 (the 4:2:0 MCU).
    """
    if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size <= 0 or input_size % 16:
        raise DctqError(
            f"input_size must be a positive multiple of 16 pixels (one 4:2:0 MCU), got {input_size!r}; "
            "e.g. 32 for CIFAR, 224 for ImageNet"
        )
    return input_size // 8, input_size // 8


def default_train_transforms() -> Compose:
    """QSAM's training augmentation on the block grid: random flip, then pad one MCU + random crop."""
    return Compose([RandomHFlip(0.5), RandomPadCrop(1)])
