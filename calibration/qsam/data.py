"""QSAM's data on both stages (METHODS.md section 1).

Base stage: every training image is seen at all base qualities (90, 60, 30, 10) in one step, each
version with the *same* crop and flip, and version k is normalised by QABN branch k (hard routing).
`MultiQualityDataset` produces the K versions of a sample by replaying the dataset's random
Generator for each quality, so the augmentation draws are identical; `collate_versions` stacks them
as QSAM does: chunk k of the batch holds every image at quality k, and `batch["branch"]` says so.
This costs K re-compressions and reads per image (QSAM's own loader does the same).

Before the meta stage has trained the mixing MLP, a QABN model is evaluated with oracle routing
(`models.qabn_routing.oracle_branch_index`).

Meta stage (qsam/meta.py): `meta_train_data` rebuilds the base run's split, `QualityView` serves a sample
at any quality and `EpisodeSampler` draws the episodes' (meta-train, meta-test) batch pairs. Stage 1 is `calibration.train.loop.train` with
`TrainConfig(qabn=True)`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from ...common.errors import DataError, ModelError
from ...jpeg.dataset import FolderDataset, collate_samples
from ...jpeg.recompress import QualityPolicy
from ...models.checkpoint import LoadedCheckpoint, load_checkpoint
from ...models.qabn import QSAM_BASE_QUALITIES
from ..train.config import saved_train_config
from ..train.data import TrainData, build_train_data

logger = logging.getLogger(__name__)


class MultiQualityDataset(Dataset):
    """Each item is the tuple of K samples of one image, re-compressed at each of `qualities`.

    Args:
        base: a training FolderDataset (JpegFolder or RgbJpegFolder) with train=True; its own
            quality policy is replaced, one quality at a time, while an item is built.
        qualities: the base qualities, branch k <-> qualities[k] (QSAM_BASE_QUALITIES by default).

    Raises:
        DataError: `base` is not a training FolderDataset, or qualities is empty.
    """

    def __init__(self, base: FolderDataset, qualities: Sequence[int] = QSAM_BASE_QUALITIES) -> None:
        if not isinstance(base, FolderDataset):
            raise DataError(
                f"QABN training needs a dctq folder dataset (JpegFolder/RgbJpegFolder), got {type(base).__name__}"
            )
        if not base.train:
            raise DataError("QABN training needs the training dataset (train=True), got an evaluation one")
        if not qualities:
            raise DataError("MultiQualityDataset needs at least one quality")
        self.base = base
        self.qualities = tuple(int(q) for q in qualities)
        self._policies = [QualityPolicy(train_qualities=(q,)) for q in self.qualities]

    @property
    def class_names(self) -> list[str]:
        return self.base.class_names

    @property
    def targets(self) -> list[int]:
        return self.base.targets

    def reseed(self, seed: int | None) -> None:
        """Seed the base dataset's main-process Generator (see FolderDataset.reseed)."""
        self.base.reseed(seed)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        rng = self.base.rng()
        start = rng.bit_generator.state
        saved = self.base.qualities
        versions = []
        try:
            for policy in self._policies:
                # Replaying the Generator from the same state gives every version the same crop/flip.
                rng.bit_generator.state = start
                self.base.qualities = policy
                versions.append(self.base[index])
        finally:
            self.base.qualities = saved
        return tuple(versions)


def collate_versions(batch: Sequence[tuple[Any, ...]]) -> dict[str, Tensor]:
    """Stack MultiQualityDataset items: chunk k of every tensor holds all N images at quality k.

    Returns the keys of the samples' own collate (y/cbcr or x, qt, label, quality), each with
    K*N rows, plus branch: [K*N] int64, the QABN branch of each row (k for chunk k).
    """
    k = len(batch[0])
    chunks = [collate_samples([item[i] for item in batch]) for i in range(k)]
    out = {key: torch.cat([c[key] for c in chunks]) for key in chunks[0]}
    out["branch"] = torch.arange(k).repeat_interleave(len(batch))
    return out


# ------------------------------------------------------------------------------------- meta stage


class QualityView(Dataset):
    """Items keyed by (index, quality): sample `index` of `base` re-compressed at `quality`."""

    def __init__(self, base: FolderDataset) -> None:
        self.base = base
        self._policies: dict[int, QualityPolicy] = {}

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, quality = key
        policy = self._policies.setdefault(quality, QualityPolicy(train_qualities=(quality,)))
        saved, self.base.qualities = self.base.qualities, policy
        try:
            return self.base[index]
        finally:
            self.base.qualities = saved


class EpisodeSampler(Sampler[list[tuple[int, int]]]):
    """Two batches per meta episode: a meta-train batch at one random base quality, then a meta-test
    batch at one random held-out quality (QSAM draws both from the training split).

    Yields lists of (index, quality) for QualityView; `batch_size` distinct images per batch.
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        episodes: int,
        base_qualities: Sequence[int],
        held_out_qualities: Sequence[int],
        seed: int,
    ) -> None:
        if size < 1:
            raise DataError("the meta stage needs training images; the training set is empty")
        self.size, self.batch_size, self.episodes, self.seed = size, min(batch_size, size), episodes, seed
        self.base, self.held_out = tuple(base_qualities), tuple(held_out_qualities)

    def __len__(self) -> int:
        return 2 * self.episodes

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        rng = np.random.default_rng(self.seed)
        for _ in range(self.episodes):
            for qualities in (self.base, self.held_out):
                quality = qualities[int(rng.integers(len(qualities)))]
                yield [(int(i), quality) for i in rng.choice(self.size, self.batch_size, replace=False)]


def meta_train_data(base_checkpoint: Path | str | LoadedCheckpoint, data: str | Path) -> TrainData:
    """The training and validation sets of the base run of `base_checkpoint` on `data` ("cifar10" or an
    ImageFolder): the same split (its TrainConfig's val_fraction) and input layout.

    Raises:
        ModelError: the checkpoint holds no training config. ConfigError: one this dctq cannot read.
        DataError: as build_train_data.
    """
    loaded = (
        base_checkpoint if isinstance(base_checkpoint, LoadedCheckpoint) else load_checkpoint(base_checkpoint)
    )
    config = saved_train_config(loaded.extra)
    if config is None:
        raise ModelError(
            f"{base_checkpoint} holds no training config, so its data split is unknown; "
            "give the best.pt of a `dctq train --qabn` run"
        )
    return build_train_data(data, config)
