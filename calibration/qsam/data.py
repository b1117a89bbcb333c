"""QSAM's base stage on the data side, and oracle routing of QABN models (METHODS.md section 1).

Base stage: every training image is seen at all base qualities (90, 60, 30, 10) in one step, each
version with the *same* crop and flip, and version k is normalised by QABN branch k (hard routing).
`MultiQualityDataset` produces the K versions of a sample by replaying the dataset's random
Generator for each quality, so the augmentation draws are identical; `collate_versions` stacks them
as QSAM does: chunk k of the batch holds every image at quality k, and `batch["branch"]` says so.
This costs K re-compressions and reads per image (QSAM's own loader does the same).

Before the meta stage has trained the mixing MLP, a QABN model is evaluated with oracle routing:
each image goes to the branch of the base quality nearest to its quant tables
(`models.qabn_routing.oracle_branch_index`).

Meta stage (`train_meta`, one process): the backbone and BN branches are frozen and only the mixing
MLP learns, by `models.qabn.meta_step` episodes pairing a meta-train batch at a random base quality
with a meta-test batch at a random held-out quality (80, 70, 50, 40, 20), Adam with QSAM's
constant-then-exponential rate; the best epoch has the best mean validation top-1 over
`MetaConfig.eval_qualities` (MetaConfig: qsam_meta_config.py). Stage 1 is `calibration.train.train`
with `TrainConfig(qabn=True)`.
"""

from __future__ import annotations

import copy
import logging
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Sampler

from ...common.devices import resolve_device
from ...common.errors import DataError, ModelError
from ...common.files import atomic_path
from ...common.seeding import mix_seed
from ...jpeg.batch import model_inputs
from ...jpeg.dataset import FolderDataset, collate_samples, make_loader
from ...jpeg.recompress import QualityPolicy
from ...models.checkpoint import load_checkpoint, save_checkpoint
from ...models.metrics import topk_correct
from ...models.qabn import QSAM_BASE_QUALITIES, is_qabn
from .meta_config import MetaConfig, MetaEpochEnd, MetaResult
from .meta_step import MetaStepLosses, meta_step
from .qac import qac_weighted_loss

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


@torch.no_grad()
def _top1(
    model: nn.Module, dataset: FolderDataset, quality: int, config: MetaConfig, device: torch.device
) -> float:
    view = copy.copy(dataset)  # shares the sample list; only the quality policy differs
    view.qualities = QualityPolicy(test_quality=quality)
    correct = total = 0
    for batch in make_loader(view, config.batch_size, shuffle=False, num_workers=config.num_workers):
        logits = model(*model_inputs(batch, device))
        correct += int(topk_correct(logits, batch["label"].to(device), (1,))[0])
        total += batch["label"].shape[0]
    return correct / max(total, 1)


def train_meta(
    config: MetaConfig,
    base_checkpoint: Path,
    train_set: FolderDataset,
    val_set: FolderDataset,
    out_dir: Path,
    *,
    progress: Callable[[MetaEpochEnd], None] | None = None,
) -> MetaResult:
    """QSAM's meta stage on a base-stage checkpoint (`dctq train --qabn`): trains `model.qabn_mixer`
    with `models.qabn.meta_step` episodes, one process, and writes best.pt / last.pt into `out_dir`
    (extra["qsam"]["stage"] = "meta", so evaluation mixes the branches with the mixer).

    Args:
        train_set: training JpegFolder / RgbJpegFolder (train=True) of the base stage's data.
        val_set: its evaluation-mode validation set; re-compressed at each of config.eval_qualities.

    Raises:
        ModelError: the checkpoint has no QABN layers. DataError: empty data. ConfigError: bad config.
    """
    device = resolve_device(config.device, local_rank=0)
    loaded = load_checkpoint(base_checkpoint, map_location=device)
    model = loaded.model
    if not is_qabn(model):
        raise ModelError(
            f"{base_checkpoint} has no QABN layers; train the base stage with `dctq train --qabn` first"
        )
    model.requires_grad_(False)
    mixer = model.qabn_mixer.requires_grad_(True)
    optimizer = torch.optim.Adam(mixer.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, config.lr_factor)
    steps = config.steps_per_epoch or max(1, len(train_set) // config.batch_size)
    loss_fn = (
        qac_weighted_loss if config.qac else (lambda logits, labels, qt: F.cross_entropy(logits, labels))
    )
    extra = {
        **{k: v for k, v in loaded.extra.items() if k in ("train_config", "qabn")},
        "qsam": {
            "stage": "meta",
            "base_qualities": list(config.base_qualities),
            "base": str(base_checkpoint),
        },
        "meta_config": config.to_dict(),
    }
    out_dir = Path(out_dir)
    history: list[MetaEpochEnd] = []
    best_epoch, best = 0, -1.0
    for epoch in range(config.epochs):
        tick = time.perf_counter()
        # Three streams per epoch (episodes, worker seeds, augmentation), told apart by the last part.
        episodes, workers, augment = (mix_seed(config.seed, epoch, stream) for stream in range(3))
        sampler = EpisodeSampler(
            len(train_set), config.batch_size, steps, config.base_qualities, config.held_out_qualities,
            seed=episodes,
        )  # fmt: skip
        loader = DataLoader(
            QualityView(train_set), batch_sampler=sampler, num_workers=config.num_workers,
            collate_fn=collate_samples, generator=torch.Generator().manual_seed(workers),
        )  # fmt: skip
        if config.num_workers == 0:
            train_set.reseed(augment)
        sums = np.zeros(4)
        batches = iter(loader)
        for tr, te in zip(batches, batches, strict=True):
            inputs_tr, inputs_te = model_inputs(tr, device), model_inputs(te, device)
            branch = config.base_qualities.index(int(tr["quality"][0]))
            losses = meta_step(
                model,
                (inputs_tr[:-1], tr["label"].to(device), inputs_tr[-1], branch),
                (inputs_te[:-1], te["label"].to(device), inputs_te[-1]),
                optimizer,
                loss_fn=loss_fn,
                inner_lr=config.inner_lr,
                test_weight=config.test_weight,
                base_weight=config.base_weight,
            )
            sums += (losses.train, losses.test, losses.base, losses.total)
        scheduler.step()
        model.eval()
        val = {q: _top1(model, val_set, q, config, device) for q in config.eval_qualities}
        mean = sum(val.values()) / len(val)
        is_best = mean > best
        if is_best:
            best_epoch, best = epoch + 1, mean
        info = {**extra, "epoch": epoch + 1, "val_top1": {str(q): v for q, v in val.items()}}
        last = save_checkpoint(out_dir / "last.pt", model, arch=loaded.arch, arch_kwargs=loaded.arch_kwargs,
                               class_names=loaded.class_names, extra=info)  # fmt: skip
        if is_best:
            with atomic_path(out_dir / "best.pt") as tmp:
                shutil.copyfile(last, tmp)
        end = MetaEpochEnd(epoch + 1, config.epochs, MetaStepLosses(*(float(x) for x in sums / steps)), val, mean, is_best,
                           time.perf_counter() - tick)  # fmt: skip
        history.append(end)
        logger.info(
            "meta epoch %d/%d: loss %.4f, mean val top-1 %.4f",
            epoch + 1,
            config.epochs,
            end.losses.total,
            mean,
        )
        if progress is not None:
            progress(end)
    model.qabn_mixer.stage = "meta"  # evaluated with the mixer (models.qabn.choose_routing)
    return MetaResult(out_dir / "best.pt", out_dir / "last.pt", best_epoch, best, tuple(history), model)
