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

Batched forms draw one decision per sample from a torch Generator and work on whole batches of
tensors (zero-shot fine-tuning augments synthetic batches this way): `random_flip_pad_crop` is the
block-grid flip and shift above for `y: [B, 64, Hb, Wb]`, `cbcr: [B, 128, Hb/2, Wb/2]`, and
`random_resized_crop_flip` is torchvision's RandomResizedCrop + RandomHorizontalFlip on pixels
`[B, C, H, W]`, differentiable, in one grid_sample call.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..common.errors import DctqError
from .geometry import center_crop_or_pad, hflip, random_block_crop

# RandomResizedCrop's ranges for the batched augmentations (zero-shot synthesis and fine-tuning): area
# fraction and aspect ratio. The configs that expose them (SynthConfig, ZeroShotConfig) default to these.
CROP_SCALE = (0.5, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)

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


# ------------------------------------------------------------------------------- batched, torch


def random_flip_pad_crop(
    y: Tensor, cbcr: Tensor, gen: torch.Generator, *, flip_p: float = 0.5, pad_mcus: int = 1
) -> tuple[Tensor, Tensor]:
    """Per-sample DCT-domain flip and MCU-aligned random shift of a batch, drawn from `gen` (CPU):
    the batched `Compose([RandomHFlip(flip_p), RandomPadCrop(pad_mcus)])`.

    y [B, 64, Hb, Wb], cbcr [B, 128, Hb/2, Wb/2] -> the same shapes and dtypes; vacated blocks are zero
    (flat mid-grey when decoded).
    """
    n = y.shape[0]
    flip = torch.rand(n, generator=gen) < flip_p
    y_f, c_f = hflip(y, cbcr)
    y = torch.where(flip[:, None, None, None], y_f, y)
    cbcr = torch.where(flip[:, None, None, None], c_f, cbcr)
    if pad_mcus == 0:
        return y, cbcr
    hb, wb = int(y.shape[-2]), int(y.shape[-1])
    y_p, c_p = center_crop_or_pad(y, cbcr, hb + 4 * pad_mcus, wb + 4 * pad_mcus)
    top = torch.randint(0, 2 * pad_mcus + 1, (n,), generator=gen).tolist()
    left = torch.randint(0, 2 * pad_mcus + 1, (n,), generator=gen).tolist()
    y = torch.stack(
        [
            y_p[i, :, 2 * t : 2 * t + hb, 2 * s : 2 * s + wb]
            for i, (t, s) in enumerate(zip(top, left, strict=True))
        ]
    )
    cbcr = torch.stack(
        [c_p[i, :, t : t + hb // 2, s : s + wb // 2] for i, (t, s) in enumerate(zip(top, left, strict=True))]  # type: ignore[index]
    )
    return y, cbcr


def draw_crop_boxes(
    n: int,
    height: int,
    width: int,
    gen: torch.Generator,
    *,
    scale: tuple[float, float] = CROP_SCALE,
    ratio: tuple[float, float] = CROP_RATIO,
    attempts: int = 10,
) -> Tensor:
    """RandomResizedCrop boxes as torchvision draws them, one per image: [n, 4] float64 (top, left, h, w).

    Area fraction uniform in `scale`, log aspect ratio uniform in log(`ratio`); the first of `attempts`
    draws that fits is kept, otherwise the whole image (torchvision's fallback for a square image).
    """
    area = float(height * width)
    target = area * (
        scale[0] + (scale[1] - scale[0]) * torch.rand(n, attempts, generator=gen, dtype=torch.float64)
    )
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(
        log_lo + (log_hi - log_lo) * torch.rand(n, attempts, generator=gen, dtype=torch.float64)
    )
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = ok.to(torch.int64).argmax(dim=1, keepdim=True)
    found = ok.any(dim=1)
    w = torch.where(found, w.gather(1, first).squeeze(1), torch.full((n,), float(width), dtype=torch.float64))
    h = torch.where(
        found, h.gather(1, first).squeeze(1), torch.full((n,), float(height), dtype=torch.float64)
    )
    top = torch.floor(torch.rand(n, generator=gen, dtype=torch.float64) * (height - h + 1))
    left = torch.floor(torch.rand(n, generator=gen, dtype=torch.float64) * (width - w + 1))
    return torch.stack([top, left, h, w], dim=1)


def resized_crop_flip(x: Tensor, boxes: Tensor, flip: Tensor) -> Tensor:
    """Crop each image to its box, resize back to the full size (bilinear), mirror where `flip`.

    x: [B, C, H, W] float; boxes: [B, 4] (top, left, h, w) in pixels; flip: [B] bool.
    Returns [B, C, H, W], differentiable in x; an identity box without flip returns x's values.
    One grid_sample call: the box is an affine map of the normalised output grid (align_corners=False,
    so output pixel centres land on the crop's pixel centres as torchvision's resize places them).
    """
    b, c, height, width = x.shape
    boxes = boxes.to(device=x.device, dtype=x.dtype)
    top, left, h, w = boxes.unbind(1)
    sx, sy = w / width, h / height
    tx, ty = (2 * left + w) / width - 1, (2 * top + h) / height - 1
    sx = torch.where(flip.to(x.device), -sx, sx)
    theta = x.new_zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = sx, tx
    theta[:, 1, 1], theta[:, 1, 2] = sy, ty
    grid = F.affine_grid(theta, [b, c, height, width], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_resized_crop_flip(
    x: Tensor,
    gen: torch.Generator,
    *,
    scale: tuple[float, float] = CROP_SCALE,
    ratio: tuple[float, float] = CROP_RATIO,
    flip_p: float = 0.5,
) -> Tensor:
    """`RandomHorizontalFlip(RandomResizedCrop(H, scale, ratio))` per image of x [B, C, H, W], drawing
    from `gen` (CPU)."""
    n, _, height, width = x.shape
    boxes = draw_crop_boxes(n, height, width, gen, scale=scale, ratio=ratio)
    flip = torch.rand(n, generator=gen) < flip_p
    return resized_crop_flip(x, boxes, flip)


# ------------------------------------------------------------------ random resized crops (photographs)

RRC_SCALE = (0.08, 1.0)
"""torchvision's RandomResizedCrop area range, for training on photographs (augment "rrc")."""


def draw_box(
    height: int,
    width: int,
    rng: np.random.Generator,
    scale: tuple[float, float] = RRC_SCALE,
    ratio: tuple[float, float] = CROP_RATIO,
    attempts: int = 10,
) -> tuple[int, int, int, int]:
    """(top, left, h, w) of one RandomResizedCrop box, drawn from `rng` as torchvision draws it (area
    fraction uniform in `scale`, log aspect ratio uniform in log(`ratio`), 10 attempts, then the whole image
    cropped to the ratio range)."""
    area = height * width
    for _ in range(attempts):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        h, w = height, round(height * ratio[1])
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


@dataclass(frozen=True)
class DctResizedCrop:
    """RandomResizedCrop + horizontal flip in the DCT domain, for DCT models trained on photographs
    (augment "rrc"): no decode. The torchvision box is drawn, snapped to the MCU grid (16 px), the crop is
    downscaled by the power of two (1, 2, 4, 8; input_policy.dct_downscale) nearest in log scale to
    box / size, flipped with `flip_p`, and the caller centre-crops or pads it to `size`. Unlike torchvision
    the scale comes in powers of two and the aspect ratio is never stretched (the crop to a square does it),
    the price of not decoding: `bench/photo_input.py` measures both.

    `__call__(coefs, rng) -> JpegCoefficients` (a new one; cbcr None for grayscale).
    """

    size: int
    scale: tuple[float, float] = RRC_SCALE
    ratio: tuple[float, float] = CROP_RATIO
    flip_p: float = 0.5

    def __post_init__(self) -> None:
        grid_for_input_size(self.size)
        if not 0 < self.scale[0] <= self.scale[1] <= 1 or not 0 < self.ratio[0] <= self.ratio[1]:
            raise DctqError(f"DctResizedCrop: bad scale {self.scale} or ratio {self.ratio}")

    def __call__(self, coefs: Any, rng: np.random.Generator) -> Any:
        from .input_policy import dct_downscale

        top, left, h, w = draw_box(coefs.height, coefs.width, rng, self.scale, self.ratio)
        # snap to MCUs: the window's blocks, at least one MCU each way
        t0, l0 = top // 16, left // 16
        t1, l1 = max(t0 + 1, round((top + h) / 16)), max(l0 + 1, round((left + w) / 16))
        y = coefs.y[:, 2 * t0 : 2 * t1, 2 * l0 : 2 * l1]
        cbcr = None if coefs.cbcr is None else coefs.cbcr[:, t0:t1, l0:l1]
        height = min(coefs.height - 16 * t0, 16 * (t1 - t0))
        width = min(coefs.width - 16 * l0, 16 * (l1 - l0))
        crop = dataclasses.replace(coefs, y=y, cbcr=cbcr, height=height, width=width)
        factor = 2 ** min(3, max(0, round(math.log2(max(1.0, min(height, width) / self.size)))))
        out = dct_downscale(crop, factor)
        if rng.random() < self.flip_p:
            fy, fc = hflip(out.y, out.cbcr)
            out = dataclasses.replace(out, y=fy, cbcr=fc)
        return out
