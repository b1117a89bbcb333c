"""Training and validation datasets for an architecture, from a JPEG folder or the CIFAR-10 archive.

The validation split is stratified and seeded with SPLIT_SEED, not with the training seed, so runs
with different seeds (and `dctq evaluate --split val` later) share one validation set.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ...common.errors import DataError
from ...jpeg.cifar import cifar10_root, cifar10_splits
from ...jpeg.dataset import FolderDataset, JpegFolder
from ...jpeg.pixel_augment import PixelCropFlip
from ...jpeg.recompress import QualityPolicy
from ...jpeg.rgb import RgbJpegFolder
from ...jpeg.samples import Sample, list_samples, split_samples
from ...jpeg.transforms import RandomHFlip
from ...models.registry import get_model_info
from .config import AUGMENTS, TrainConfig

CIFAR10 = "cifar10"
"""The `--data` value naming the shared CIFAR-10 JPEG archive (see jpeg/cifar.py)."""

SPLIT_SEED = 0
SPLITS = ("train", "val", "all")


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
    arch: str,
    root: Path,
    samples: list[Sample],
    *,
    train: bool,
    policy: QualityPolicy,
    augment: str = "default",
) -> FolderDataset:
    """The dataset an architecture reads: JpegFolder (DCT models) or RgbJpegFolder (RGB models),
    cropped/padded to the architecture's input size.

    augment (training only): "default" (the dataset's own), "flip" (random horizontal flip only),
    "crop" (reflect-pad 4 + random crop + flip in pixels: RGB's default; DCT files are decoded and
    re-encoded with their own tables, jpeg.pixel_augment) or "none".

    Raises:
        ModelError: unknown architecture. DataError: bad folder or augment name.
    """
    if augment not in AUGMENTS:
        raise DataError(f"augment must be one of {AUGMENTS}, got {augment!r}")
    info = get_model_info(arch)
    common = {"input_size": info.input_size, "qualities": policy, "train": train, "samples": samples}
    if info.input_kind == "dct":
        if augment == "crop":
            return JpegFolder(root, transforms=None, pixel_augment=PixelCropFlip(pad=4), **common)
        transforms = {"default": "default", "flip": RandomHFlip(0.5), "none": None}[augment]
        return JpegFolder(root, transforms=transforms if train else None, **common)
    if augment in ("default", "crop"):
        return RgbJpegFolder(root, **common)
    return RgbJpegFolder(root, augment=train and augment == "flip", pad=0, **common)


@dataclass(frozen=True)
class TrainData:
    """The two datasets of a run and the split they came from."""

    train: FolderDataset
    val: FolderDataset
    split: DataSplit


def build_train_data(data: str | Path, config: TrainConfig, *, cache_dir: Path | None = None) -> TrainData:
    """Datasets for `config`: training images re-compressed per `config.train_qualities`, validation
    ones at `config.eval_quality`, split off `data` by `config.val_fraction`.

    Raises:
        DataError: as split_data, or an empty training or validation split. ModelError: unknown arch.
    """
    get_model_info(config.arch)  # an unknown name fails before the data is read
    split = split_data(data, config.val_fraction, cache_dir=cache_dir)
    policy = QualityPolicy(train_qualities=config.train_qualities, test_quality=config.eval_quality)
    return TrainData(
        train=make_dataset(
            config.arch, split.root, split.samples("train"), train=True, policy=policy, augment=config.augment
        ),
        val=make_dataset(config.arch, split.root, split.samples("val"), train=False, policy=policy),
        split=split,
    )
