"""Train/validation splits of a JPEG folder or the CIFAR-10 archive, and the dataset a model's input reads.

The validation split is stratified and seeded with SPLIT_SEED, not with a training seed, so training
runs with different seeds, `dctq evaluate --split val` and PTQ calibration later all share one
validation set. `make_dataset` picks the coefficient (`JpegFolder`) or the pixel path
(`RgbJpegFolder`) by the model's input kind; calibration/train/data.py looks both up for an
architecture name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..common.errors import DataError
from .cifar import cifar10_root, cifar10_splits
from .dataset import FolderDataset, JpegFolder
from .input_policy import InputPolicy
from .pixel_augment import PixelCropFlip, PixelResizedCrop
from .recompress import QualityPolicy
from .rgb import RgbJpegFolder
from .samples import Sample, list_samples, split_samples
from .transforms import DctResizedCrop, RandomHFlip

CIFAR10 = "cifar10"
"""The `--data` value naming the shared CIFAR-10 JPEG archive (see jpeg/cifar.py)."""

SPLIT_SEED = 0
SPLITS = ("train", "val", "all")
AUGMENTS = ("default", "flip", "crop", "none", "rrc", "rrc-pixels")
"""Training augmentations of `make_dataset` (TrainConfig.augment)."""


@dataclass(frozen=True)
class DataSplit:
    """Where the images are and which of them form each split."""

    root: Path
    train: list[Sample]
    val: list[Sample]
    class_names: list[str]
    description: str = ""

    def samples(self, split: str) -> list[Sample]:
        """The samples of `split` ("train", "val" or "all").

        Raises:
            DataError: another split name, or an empty split.
        """
        if split not in SPLITS:
            raise DataError(f"--split must be one of {SPLITS}, got {split!r}")
        if split == "all":
            return sorted(self.train + self.val)
        chosen = self.train if split == "train" else self.val
        if not chosen:
            raise DataError(
                f"splitting {self.description} leaves {len(self.train)} training and {len(self.val)} "
                "validation images; use more images or another --val-fraction"
            )
        return chosen


def split_data(data: str | Path, val_fraction: float, *, cache_dir: Path | None = None) -> DataSplit:
    """Split `data` ("cifar10" or an ImageFolder of JPEGs) into train/val, stratified, seeded SPLIT_SEED.

    Raises:
        DataError: missing folder/archive or no JPEG files.
    """
    if str(data) == CIFAR10:
        train, val, classes = cifar10_splits(val_fraction=val_fraction, seed=SPLIT_SEED, cache_dir=cache_dir)
        root = cifar10_root(cache_dir)
    else:
        root = Path(data)
        samples, classes = list_samples(root)
        train, val = split_samples(samples, val_fraction, SPLIT_SEED)
    return DataSplit(root, train, val, classes, f"{data} with --val-fraction {val_fraction}")


def make_dataset(
    input_kind: str,
    input_size: int,
    root: Path,
    samples: list[Sample],
    *,
    train: bool,
    policy: QualityPolicy,
    augment: str = "default",
    input_policy: InputPolicy | None = None,
) -> FolderDataset:
    """The dataset a model reads: JpegFolder (input_kind "dct") or RgbJpegFolder ("rgb"), each file fitted
    to `input_size` pixels by `input_policy` (jpeg.input_policy; None: the legacy crop/pad, CIFAR-10
    statistics for RGB).

    augment (training only): "default" (the dataset's own), "flip" (random horizontal flip only),
    "crop" (reflect-pad 4 + random crop + flip in pixels: RGB's default; DCT files are decoded and
    re-encoded with their own tables, jpeg.pixel_augment), "none"; for photographs "rrc" (RandomResizedCrop
    + flip: DCT models in the DCT domain, transforms.DctResizedCrop, no decode; RGB models in pixels) or
    "rrc-pixels" (the exact torchvision crop in pixels for DCT models too, re-encoded with the file's tables).

    Raises:
        DataError: bad folder, input kind or augment name.
    """
    if augment not in AUGMENTS:
        raise DataError(f"augment must be one of {AUGMENTS}, got {augment!r}")
    if input_kind not in ("dct", "rgb"):
        raise DataError(f"input_kind must be 'dct' or 'rgb', got {input_kind!r}")
    common = {
        "input_size": input_size,
        "qualities": policy,
        "train": train,
        "samples": samples,
        "input_policy": input_policy,
    }
    if input_kind == "dct":
        if augment == "crop":
            return JpegFolder(root, transforms=None, pixel_augment=PixelCropFlip(pad=4), **common)
        if augment == "rrc-pixels":
            return JpegFolder(root, transforms=None, pixel_augment=PixelResizedCrop(input_size), **common)
        if augment == "rrc":
            return JpegFolder(root, transforms=None, resized_crop=DctResizedCrop(input_size), **common)
        transforms = {"default": "default", "flip": RandomHFlip(0.5), "none": None}[augment]
        return JpegFolder(root, transforms=transforms if train else None, **common)
    if augment in ("default", "crop"):
        return RgbJpegFolder(root, **common)
    if augment in ("rrc", "rrc-pixels"):
        return RgbJpegFolder(root, augment=False, resized_crop=True, **common)
    return RgbJpegFolder(root, augment=train and augment == "flip", pad=0, **common)
