"""QSAM's meta stage (Ma et al., METHODS.md section 1, "Two-stage schedule"): a base-stage QABN model's
backbone and BN branches frozen, its mixing MLP learns, one `meta_step` episode (qsam/episode.py) at a
time. `MetaConfig`: the options, saved as extra["meta_config"];
`train_meta`: the epoch loop, one process, each episode a meta-train batch at a random base quality and a
meta-test batch at a random held-out quality (qsam/data.py's EpisodeSampler), Adam at QSAM's
constant-then-exponential rate, best epoch by mean validation top-1 over `MetaConfig.eval_qualities`;
its checkpoints record extra["qsam"]["stage"] = "meta", so evaluation mixes the branches.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ...common.devices import resolve_device
from ...common.errors import ConfigError, ModelError
from ...common.seeding import mix_seed
from ...jpeg.batch import model_inputs
from ...jpeg.dataset import FolderDataset, collate_samples, make_loader
from ...jpeg.recompress import QualityPolicy
from ...models.checkpoint import checkpoint_payload, load_checkpoint
from ...models.metrics import topk_correct
from ...models.qabn import is_qabn
from ..train.state import BEST, LAST, check_no_run, read_epoch_state, repair_epoch_files, write_epoch
from .config import MetaConfig
from .data import EpisodeSampler, QualityView
from .episode import MetaStepLosses, meta_step

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MetaEpochEnd:
    """A meta epoch ended: mean episode losses and validation top-1 per quality."""

    epoch: int
    epochs: int
    losses: MetaStepLosses
    val_top1: dict[int, float]
    mean_top1: float
    is_best: bool
    seconds: float


@dataclass(frozen=True)
class MetaResult:
    """best.pt / last.pt of the meta stage; `model` holds the last epoch's mixer (eval mode)."""

    best_path: Path
    last_path: Path
    best_epoch: int
    best_mean_top1: float
    history: tuple[MetaEpochEnd, ...]
    model: nn.Module = dataclasses.field(repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (`dctq train-meta --json`), without the model: paths as strings, each epoch of
        the history as a plain dict (its `val_top1` keys are the qualities)."""
        return {
            "best_path": str(self.best_path),
            "last_path": str(self.last_path),
            "best_epoch": self.best_epoch,
            "best_mean_top1": self.best_mean_top1,
            "history": [dataclasses.asdict(h) for h in self.history],
        }


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


# ------------------------------------------------------------------------------------ the stage


class _MetaRun:
    """One meta stage; an object only to share its pieces between the loop's methods."""

    def __init__(
        self,
        config: MetaConfig,
        base_checkpoint: Path,
        train_set: FolderDataset,
        val_set: FolderDataset,
        out_dir: Path,
        progress: Callable[[MetaEpochEnd], None] | None,
    ) -> None:
        self.config, self.train_set, self.val_set, self.progress = config, train_set, val_set, progress
        self.out_dir = Path(out_dir)
        self.device = resolve_device(config.device, local_rank=0)
        self.loaded = load_checkpoint(base_checkpoint, map_location=self.device)
        self.model = self.loaded.model
        if not is_qabn(self.model):
            raise ModelError(
                f"{base_checkpoint} has no QABN layers; train the base stage with `dctq train --qabn` first"
            )
        self.model.requires_grad_(False)
        mixer = self.model.qabn_mixer.requires_grad_(True)
        self.optimizer = torch.optim.Adam(mixer.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, config.lr_factor)
        self.steps = config.steps_per_epoch or max(1, len(train_set) // config.batch_size)
        self.loss_fn = config.episode_loss()
        self.extra = {
            **{k: v for k, v in self.loaded.extra.items() if k in ("train_config", "qabn")},
            "qsam": {
                "stage": "meta",
                "base_qualities": list(config.base_qualities),
                "base": str(base_checkpoint),
            },
            "meta_config": config.to_dict(),
        }

    def _episodes(self, epoch: int) -> DataLoader:
        """The epoch's episodes: (meta-train, meta-test) batch pairs, seeded by (seed, epoch)."""
        config = self.config
        # Three streams per epoch (episodes, worker seeds, augmentation), told apart by the last part.
        episodes, workers, augment = (mix_seed(config.seed, epoch, stream) for stream in range(3))
        sampler = EpisodeSampler(
            len(self.train_set),
            config.batch_size,
            self.steps,
            config.base_qualities,
            config.held_out_qualities,
            seed=episodes,
        )
        if config.num_workers == 0:
            self.train_set.reseed(augment)
        return DataLoader(
            QualityView(self.train_set),
            batch_sampler=sampler,
            num_workers=config.num_workers,
            collate_fn=collate_samples,
            generator=torch.Generator().manual_seed(workers),
        )

    def _train_epoch(self, epoch: int) -> MetaStepLosses:
        """Mean losses of the epoch's episodes."""
        config, device = self.config, self.device
        sums = np.zeros(4)
        batches = iter(self._episodes(epoch))
        for tr, te in zip(batches, batches, strict=True):
            inputs_tr, inputs_te = model_inputs(tr, device), model_inputs(te, device)
            branch = config.base_qualities.index(int(tr["quality"][0]))
            losses = meta_step(
                self.model,
                (inputs_tr[:-1], tr["label"].to(device), inputs_tr[-1], branch),
                (inputs_te[:-1], te["label"].to(device), inputs_te[-1]),
                self.optimizer,
                loss_fn=self.loss_fn,
                inner_lr=config.inner_lr,
                test_weight=config.test_weight,
                base_weight=config.base_weight,
            )
            sums += (losses.train, losses.test, losses.base, losses.total)
        return MetaStepLosses(*(float(x) for x in sums / self.steps))

    def _save(self, end: MetaEpochEnd, history: list[MetaEpochEnd], best_epoch: int, best: float) -> None:
        """The epoch's files, as training writes them (train/state.py: the state first, with the
        checkpoint inside it, then best.pt, then last.pt)."""
        loaded = self.loaded
        val = {str(q): v for q, v in end.val_top1.items()}
        checkpoint = checkpoint_payload(
            self.model,
            arch=loaded.arch,
            arch_kwargs=loaded.arch_kwargs,
            class_names=loaded.class_names,
            extra={**self.extra, "epoch": end.epoch, "val_top1": val},
        )
        state = {
            "format": META_STATE_FORMAT,
            "version": 1,
            "epoch": end.epoch,
            "checkpoint": checkpoint,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "best_epoch": best_epoch,
            "best": best,
            "history": [_plain_end(h) for h in history],
        }
        write_epoch(self.out_dir, state, is_best=end.is_best)

    def _resume(self) -> tuple[int, float, list[MetaEpochEnd]]:
        """Load the meta stage saved in out_dir: (best epoch, its mean top-1, history). Raises DataError
        without a saved state, ConfigError when the options differ beyond MetaConfig.RESUMABLE."""
        state = read_epoch_state(self.out_dir, META_STATE_FORMAT, "dctq meta-stage state", self.device)
        extra = state["checkpoint"]["extra"]
        changed = list(MetaConfig.from_dict(extra["meta_config"]).changes(self.config))
        if changed:
            raise ConfigError(
                f"--resume: options {changed} differ from the meta stage saved in {self.out_dir}; "
                f"only {list(MetaConfig.RESUMABLE)} may change"
            )
        self.model.load_state_dict(state["checkpoint"]["state_dict"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        repair_epoch_files(self.out_dir, state)
        history = [_end_from_plain(h) for h in state["history"]]
        logger.info("resuming the meta stage in %s after epoch %d", self.out_dir, state["epoch"])
        return state["best_epoch"], state["best"], history

    def run(self, resume: bool = False) -> MetaResult:
        config = self.config
        history: list[MetaEpochEnd] = []
        best_epoch, best = 0, -1.0
        if resume:
            best_epoch, best, history = self._resume()
        else:
            check_no_run(self.out_dir)
        for epoch in range(len(history), config.epochs):
            tick = time.perf_counter()
            losses = self._train_epoch(epoch)
            self.scheduler.step()
            self.model.eval()
            val = {q: _top1(self.model, self.val_set, q, config, self.device) for q in config.eval_qualities}
            mean = sum(val.values()) / len(val)
            is_best = mean > best
            if is_best:
                best_epoch, best = epoch + 1, mean
            end = MetaEpochEnd(
                epoch + 1, config.epochs, losses, val, mean, is_best, time.perf_counter() - tick
            )
            history.append(end)
            self._save(end, history, best_epoch, best)
            logger.info(
                "meta epoch %d/%d: loss %.4f, mean val top-1 %.4f",
                epoch + 1,
                config.epochs,
                losses.total,
                mean,
            )
            if self.progress is not None:
                self.progress(end)
        self.model.qabn_mixer.stage = "meta"  # evaluated with the mixer (models.qabn.choose_routing)
        out = self.out_dir
        return MetaResult(out / BEST, out / LAST, best_epoch, best, tuple(history), self.model)


def train_meta(
    config: MetaConfig,
    base_checkpoint: Path,
    train_set: FolderDataset,
    val_set: FolderDataset,
    out_dir: Path,
    *,
    progress: Callable[[MetaEpochEnd], None] | None = None,
    resume: bool = False,
) -> MetaResult:
    """QSAM's meta stage on a base-stage checkpoint (`dctq train --qabn`): trains `model.qabn_mixer`
    with `meta_step` episodes, one process, and writes best.pt / last.pt into `out_dir`
    (extra["qsam"]["stage"] = "meta", so evaluation mixes the branches with the mixer).

    Args:
        train_set: training JpegFolder / RgbJpegFolder (train=True) of the base stage's data.
        val_set: its evaluation-mode validation set; re-compressed at each of config.eval_qualities.
        progress: called with a MetaEpochEnd after every epoch.
        resume: continue the meta stage saved in `out_dir` after its last epoch (its files are written
            as training's are, train/state.py, so a killed stage resumes to the stage that was not killed).

    Raises:
        ModelError: the checkpoint has no QABN layers. DataError: empty data, `out_dir` already holds a
            stage (without resume) or none (with it). ConfigError: bad config, or options that differ
            from the saved stage's beyond MetaConfig.RESUMABLE.
    """
    return _MetaRun(config, base_checkpoint, train_set, val_set, out_dir, progress).run(resume)


META_STATE_FORMAT = "dctq.meta_state"


def _plain_end(end: MetaEpochEnd) -> dict[str, Any]:
    """A MetaEpochEnd as plain data for the state file (torch.load(weights_only=True) reads it)."""
    return dataclasses.asdict(end)


def _end_from_plain(data: dict[str, Any]) -> MetaEpochEnd:
    return MetaEpochEnd(
        **{
            **data,
            "losses": MetaStepLosses(**data["losses"]),
            "val_top1": {int(q): v for q, v in data["val_top1"].items()},
        }
    )
