"""Training and validation datasets for an architecture, from a JPEG folder or the CIFAR-10 archive.

The split itself (stratified, seeded with jpeg.splits.SPLIT_SEED so every run shares one validation
set) and the choice of dataset by input kind are jpeg/splits.py; this module looks the architecture
up in the model registry and applies a TrainConfig.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ...jpeg.dataset import FolderDataset
from ...jpeg.recompress import QualityPolicy
from ...jpeg.samples import Sample
from ...jpeg.splits import DataSplit, make_dataset, screen_split, split_data
from ...models.registry import create_model, get_model_info
from .config import TrainConfig


def dataset_for_arch(arch: str, root: Path, samples: list[Sample], **options: Any) -> FolderDataset:
    """`jpeg.splits.make_dataset(kind, size, root, samples, **options)` with the input kind and size of
    the registered architecture `arch`; options are make_dataset's (train, policy, augment).

    Raises:
        ModelError: unknown architecture. DataError: as make_dataset.
    """
    info = get_model_info(arch)
    return make_dataset(info.input_kind, info.input_size, root, samples, **options)


@dataclass(frozen=True)
class TrainData:
    """The two datasets of a run and the split they came from; `skipped`: files left out by
    `bad_files="skip"` (path, the reader's message)."""

    train: FolderDataset
    val: FolderDataset
    split: DataSplit
    skipped: tuple[tuple[str, str], ...] = ()


def build_train_data(
    data: str | Path, config: TrainConfig, *, cache_dir: Path | None = None, bad_files: str = "stop"
) -> TrainData:
    """Datasets for `config`: training images re-compressed per `config.train_qualities`, validation
    ones at `config.eval_quality`, split off `data` by `config.val_fraction`.

    bad_files: "stop" (a file the reader refuses stops training when it is reached), "list" (read every
    file first; UnreadableFilesError names all bad ones) or "skip" (read every file first, leave the bad
    ones out of both splits): jpeg.splits.screen_split.

    Raises:
        DataError: as split_data, or an empty training or validation split. ModelError: unknown arch.
        UnreadableFilesError: bad files with bad_files="list".
    """
    info = get_model_info(config.arch)  # an unknown name fails before the data is read
    screened = screen_split(split_data(data, config.val_fraction, cache_dir=cache_dir), bad_files)
    split = screened.split
    # The architecture's arguments checked now, before anything is printed or read: built on the meta
    # device, which allocates nothing.
    classes = {"num_classes": len(split.class_names)} if info.task == "classify" else {}
    with torch.device("meta"):
        create_model(config.arch, **classes, **config.arch_kwargs)
    policy = QualityPolicy(train_qualities=config.train_qualities, test_quality=config.eval_quality)
    return TrainData(
        train=dataset_for_arch(
            config.arch, split.root, split.samples("train"), train=True, policy=policy, augment=config.augment
        ),
        val=dataset_for_arch(config.arch, split.root, split.samples("val"), train=False, policy=policy),
        split=split,
        skipped=tuple(screened.skipped),
    )
