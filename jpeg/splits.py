"""Train/validation splits of a JPEG folder or the CIFAR-10 archive, and the dataset a model's input reads.

The validation split is stratified and seeded with SPLIT_SEED, not with a training seed, so training
runs with different seeds, `dctq evaluate --split val` and PTQ calibration later all share one
validation set. `make_dataset` picks the coefficient (`JpegFolder`) or the pixel path
(`RgbJpegFolder`) by the model's input kind; calibration/train/data.py looks both up for an
architecture name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..common.errors import DataError, UnreadableFilesError
from .cifar import cifar10_root, cifar10_splits
from .dataset import FolderDataset, JpegFolder
from .pixel_augment import PixelCropFlip
from .recompress import QualityPolicy
from .rgb import RgbJpegFolder
from .samples import Sample, list_samples, scan_samples, split_samples
from .transforms import RandomHFlip

CIFAR10 = "cifar10"
"""The `--data` value naming the shared CIFAR-10 JPEG archive (see jpeg/cifar.py)."""

SPLIT_SEED = 0
SPLITS = ("train", "val", "all")
AUGMENTS = ("default", "flip", "crop", "none")
"""Training augmentations of `make_dataset` (TrainConfig.augment)."""
BAD_FILES = ("stop", "list", "skip")
"""What a run does with files the reader refuses (`--bad-files`; see `screen_split`)."""


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


@dataclass(frozen=True)
class Screened:
    """A split after its bad-file policy: the samples left, and the files left out (path, message)."""

    split: DataSplit
    skipped: list[tuple[str, str]]


def screen_split(split: DataSplit, bad_files: str, splits: tuple[str, ...] = ("train", "val")) -> Screened:
    """Apply a bad-file policy to the samples of `splits` ("train", "val" or "all": the ones a run reads).

    "stop" (the default of the commands) changes nothing: the first file the reader refuses stops the run
    with its one-line error. "list" reads every file first and raises UnreadableFilesError naming all of
    those it refuses (nothing is trained or scored). "skip" reads every file first and leaves those out of
    both splits (other images keep their split: the split is made before, by listing); `skipped` names them.
    Files are read with the coefficient reader (`samples.scan_samples`), also for RGB models.

    Raises:
        DataError: an unknown policy. UnreadableFilesError: "list" found bad files.
    """
    if bad_files not in BAD_FILES:
        raise DataError(f"--bad-files must be one of {', '.join(BAD_FILES)}, got {bad_files!r}")
    if bad_files == "stop":
        return Screened(split, [])
    names = {"train", "val"} if "all" in splits else set(splits)
    chosen = sorted((split.train if "train" in names else []) + (split.val if "val" in names else []))
    bad = [(str(path), message) for path, message in scan_samples(chosen)]
    if bad and bad_files == "list":
        raise UnreadableFilesError(
            f"{len(bad)} of {len(chosen)} files of {split.description} cannot be read; fix or remove them, "
            "or pass --bad-files skip to leave them out",
            bad,
        )
    drop = {Path(path) for path, _ in bad}
    kept = DataSplit(
        split.root,
        [s for s in split.train if s.path not in drop],
        [s for s in split.val if s.path not in drop],
        split.class_names,
        split.description,
    )
    return Screened(kept, bad)


def _check_class_folders(root: Path, classes: list[str]) -> None:
    """Raise DataError for a class folder that cannot be listed: the listing reports it as empty (a
    warning), so a run would score or train without that class and exit 0."""
    for name in classes:
        try:
            with os.scandir(root / name):
                pass
        except OSError as exc:
            raise DataError(
                f"class folder {root / name} cannot be read ({exc.strerror or exc}); fix its permissions or "
                "move it out of the data folder"
            ) from None


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
        _check_class_folders(root, classes)
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
) -> FolderDataset:
    """The dataset a model reads: JpegFolder (input_kind "dct") or RgbJpegFolder ("rgb"),
    cropped/padded to `input_size` pixels.

    augment (training only): "default" (the dataset's own), "flip" (random horizontal flip only),
    "crop" (reflect-pad 4 + random crop + flip in pixels: RGB's default; DCT files are decoded and
    re-encoded with their own tables, jpeg.pixel_augment) or "none".

    Raises:
        DataError: bad folder, input kind or augment name.
    """
    if augment not in AUGMENTS:
        raise DataError(f"augment must be one of {AUGMENTS}, got {augment!r}")
    if input_kind not in ("dct", "rgb"):
        raise DataError(f"input_kind must be 'dct' or 'rgb', got {input_kind!r}")
    common = {"input_size": input_size, "qualities": policy, "train": train, "samples": samples}
    if input_kind == "dct":
        if augment == "crop":
            return JpegFolder(root, transforms=None, pixel_augment=PixelCropFlip(pad=4), **common)
        transforms = {"default": "default", "flip": RandomHFlip(0.5), "none": None}[augment]
        return JpegFolder(root, transforms=transforms if train else None, **common)
    if augment in ("default", "crop"):
        return RgbJpegFolder(root, **common)
    return RgbJpegFolder(root, augment=train and augment == "flip", pad=0, **common)
