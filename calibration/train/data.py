"""Training and validation datasets for an architecture, from a JPEG folder or the CIFAR-10 archive
(classifiers), or from HR images (SR models: calibration/train/sr.py); the architecture's registry task decides.

The split itself (stratified, seeded with jpeg.splits.SPLIT_SEED so every run shares one validation
set) and the choice of dataset by input kind are jpeg/splits.py; this module looks the architecture
up in the model registry and applies a TrainConfig.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from ...common.errors import DataError
from ...jpeg.dataset import FolderDataset
from ...jpeg.input_policy import InputPolicy, default_policy
from ...jpeg.recompress import QualityPolicy
from ...jpeg.samples import Sample
from ...jpeg.splits import CIFAR10, DataSplit, make_dataset, screen_split, split_data
from ...jpeg.sr.sources import NAMED as SR_SETS
from ...models.registry import create_model, get_model_info
from .config import TrainConfig
from .sr import build_sr_data


def dataset_for_arch(arch: str, root: Path, samples: list[Sample], **options: Any) -> FolderDataset:
    """`jpeg.splits.make_dataset(kind, size, root, samples, **options)` with the input kind and size of
    the registered architecture `arch`; options are make_dataset's (train, policy, augment, input_policy:
    a checkpoint's own, models.checkpoint.input_policy_of; None the legacy crop/pad).

    Raises:
        ModelError: unknown architecture. DataError: as make_dataset.
    """
    info = get_model_info(arch)
    return make_dataset(info.input_kind, info.input_size, root, samples, **options)


def train_input_policy(arch: str) -> InputPolicy:
    """The input policy a new run of `arch` trains with and records (jpeg.input_policy.default_policy)."""
    info = get_model_info(arch)
    return default_policy(info.input_kind, info.input_size)


def check_data_for_task(data: str | Path, task: str, arch: str) -> None:
    """Refuse a named data set of the other task (an SR set for a classifier, CIFAR-10 for an SR model)
    with a DataError that names both and the fix."""
    if task == "classify" and str(data) in SR_SETS:
        raise DataError(
            f"--data {data} is a super-resolution image set, but {arch} is a classifier; give cifar10 or an "
            "ImageFolder of JPEGs"
        )
    if task == "sr" and str(data) == CIFAR10:
        raise DataError(
            f"--data {data} is the CIFAR-10 classification archive, but {arch} is a super-resolution model; give "
            "--data sr or a folder of HR images"
        )


@dataclass(frozen=True)
class TrainData:
    """The two datasets of a run and the split they came from (None for SR data), described in words;
    `skipped`: files left out by `bad_files="skip"` (path, the reader's message)."""

    train: Dataset
    val: Dataset
    split: DataSplit | None
    description: str = ""
    skipped: tuple[tuple[str, str], ...] = ()


def build_train_data(
    data: str | Path, config: TrainConfig, *, cache_dir: Path | None = None, bad_files: str = "stop"
) -> TrainData:
    """Datasets for `config`: training images re-compressed per `config.train_qualities`, validation
    ones at `config.eval_quality`, split off `data` by `config.val_fraction`.

    SR architectures (task "sr"): HR images of `data`, see calibration/train/sr.py (`bad_files` does not
    apply: an unusable HR image is always a DataError).

    bad_files: "stop" (a file the reader refuses stops training when it is reached), "list" (read every
    file first; UnreadableFilesError names all bad ones) or "skip" (read every file first, leave the bad
    ones out of both splits): jpeg.splits.screen_split.

    Raises:
        DataError: as split_data, or an empty training or validation split. ModelError: unknown arch.
        UnreadableFilesError: bad files with bad_files="list".
    """
    task = get_model_info(config.arch).task  # an unknown name fails before the data is read
    check_data_for_task(data, task, config.arch)
    if task == "sr":
        with torch.device("meta"):  # the architecture's arguments checked before anything is read
            create_model(config.arch, **config.arch_kwargs)
        train, val, description = build_sr_data(data, config, cache_dir=cache_dir)
        return TrainData(train, val, None, description)
    screened = screen_split(split_data(data, config.val_fraction, cache_dir=cache_dir), bad_files)
    split = screened.split
    # The architecture's arguments checked now, before anything is printed or read: built on the meta
    # device, which allocates nothing.
    classes = {"num_classes": len(split.class_names)} if task == "classify" else {}
    with torch.device("meta"):
        create_model(config.arch, **classes, **config.arch_kwargs)
    policy = QualityPolicy(train_qualities=config.train_qualities, test_quality=config.eval_quality)
    inputs = train_input_policy(config.arch)
    return TrainData(
        train=dataset_for_arch(
            config.arch,
            split.root,
            split.samples("train"),
            train=True,
            policy=policy,
            augment=config.augment,
            input_policy=inputs,
        ),
        val=dataset_for_arch(
            config.arch, split.root, split.samples("val"), train=False, policy=policy, input_policy=inputs
        ),
        split=split,
        description=f"{len(split.class_names)} classes",
        skipped=tuple(screened.skipped),
    )
