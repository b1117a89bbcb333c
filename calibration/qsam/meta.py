"""QSAM's meta stage (Ma et al., METHODS.md section 1, "Two-stage schedule"): a base-stage QABN model's
backbone and BN branches frozen, its mixing MLP learns. `meta_step`: one second-order MAML episode on
`model.qabn_mixer` (models/qabn.py); `MetaConfig`: the options, saved as extra["meta_config"];
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
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from ...common.config import DEVICES, Config, check
from ...common.devices import resolve_device
from ...common.errors import ModelError
from ...common.seeding import mix_seed
from ...jpeg.batch import model_inputs
from ...jpeg.dataset import FolderDataset, collate_samples, make_loader
from ...jpeg.recompress import QSAM_META_TEST_QUALITIES, QualityPolicy
from ...models.checkpoint import load_checkpoint
from ...models.metrics import topk_correct
from ...models.qabn import QSAM_BASE_QUALITIES, QuantTableMixer, is_qabn, qabn_mixing
from ..train.state import BEST, LAST, save_last_and_best
from .data import EpisodeSampler, QualityView
from .qac import qac_weighted_loss

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------- the step


def _as_args(inputs: Tensor | tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    return (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)


def _plain_ce(logits: Tensor, labels: Tensor, qt: Tensor) -> Tensor:
    return F.cross_entropy(logits, labels)


@dataclasses.dataclass(frozen=True)
class MetaStepLosses:
    """Loss terms of one meta step (before the update): L_tr, L_te, L_base and the weighted total."""

    train: float
    test: float
    base: float
    total: float


def meta_step(
    model: nn.Module,
    batch_train: tuple[Tensor | tuple[Tensor, ...], Tensor, Tensor, Tensor | int | None],
    batch_test: tuple[Tensor | tuple[Tensor, ...], Tensor, Tensor],
    optimizer: torch.optim.Optimizer,
    *,
    loss_fn: Callable[[Tensor, Tensor, Tensor], Tensor] = _plain_ce,
    inner_lr: float = 1e-3,
    test_weight: float = 1.0,
    base_weight: float = 1.0,
) -> MetaStepLosses:
    """One QSAM meta-stage episode: a second-order MAML step on `model.qabn_mixer` alone.

    With theta the mixer's parameters: w = mixer_theta(qt_tr); L_tr = loss_fn(f(x_tr; w), y_tr, qt_tr);
    L_base = mean |w - onehot(branch_index)|; theta' = theta - inner_lr * grad L_tr (graph kept);
    L_te = loss_fn(f(x_te; mixer_theta'(qt_te)), y_te, qt_te); the optimizer then steps the mixer on
    L_tr + test_weight * L_te + base_weight * L_base. The model runs in eval mode (frozen backbone and
    BN statistics; its train/eval mode is restored afterwards) and only mixer parameters receive
    gradients, so the optimizer may be built over `model.qabn_mixer.parameters()` only.

    Args:
        batch_train: (inputs, labels [N] long, qt [N, 3, 64], branch_index) at a base quality;
            inputs = the forward arguments before qt ((y, cbcr) or x); branch_index = that quality's
            branch (int or [N] long), or None to drop L_base (meta-train batch not at a base quality).
        batch_test: (inputs, labels, qt) at a held-out quality.
        loss_fn: (logits, labels, qt) -> scalar; QSAM uses `dctq.calibration.qsam.qac.qac_weighted_loss`
            (the per-sample form; the reference code's meta stage weights L_tr/L_te B times larger).
    Raises:
        ModelError: `model` was not converted with apply_qabn.
    """
    if not is_qabn(model):
        raise ModelError(f"{type(model).__name__} has no QABN layers; convert it with apply_qabn first")
    mixer: QuantTableMixer = model.qabn_mixer
    names = [n for n, _ in mixer.named_parameters()]
    params = [p for _, p in mixer.named_parameters()]
    inputs_tr, labels_tr, qt_tr, branch_index = batch_train
    inputs_te, labels_te, qt_te = batch_test
    was_training = model.training
    model.eval()
    try:
        w_tr = mixer(qt_tr)
        with qabn_mixing(model, w_tr):
            l_tr = loss_fn(model(*_as_args(inputs_tr), qt=qt_tr), labels_tr, qt_tr)
        if branch_index is None:
            l_base = w_tr.new_zeros(())
        else:
            target_index = torch.as_tensor(branch_index, device=w_tr.device).long().expand(w_tr.shape[0])
            target = F.one_hot(target_index, mixer.num_branches).to(w_tr.dtype)
            l_base = F.l1_loss(w_tr, target)
        grads = torch.autograd.grad(l_tr, params, create_graph=True)
        adapted = {n: p - inner_lr * g for n, p, g in zip(names, params, grads, strict=True)}
        w_te = torch.func.functional_call(mixer, adapted, (qt_te,))
        with qabn_mixing(model, w_te):
            l_te = loss_fn(model(*_as_args(inputs_te), qt=qt_te), labels_te, qt_te)
        total = l_tr + test_weight * l_te + base_weight * l_base
        optimizer.zero_grad(set_to_none=True)
        # Gradients w.r.t. the mixer only, so frozen backbone parameters never get a .grad.
        for p, g in zip(params, torch.autograd.grad(total, params), strict=True):
            p.grad = g
        optimizer.step()
    finally:
        model.train(was_training)
    return MetaStepLosses(*(float(t.detach()) for t in (l_tr, l_te, l_base, total)))


# ------------------------------------------------------------------------------------ options


@dataclass(frozen=True)
class MetaConfig(Config):
    """QSAM's meta stage: learn the QABN mixing MLP alone, backbone and BN branches frozen.

    Saved as {"type", "version", "fields"} (common.config), version 1; bad values raise ConfigError.
    """

    epochs: int = 150
    """Meta epochs (QSAM: 150)."""

    steps_per_epoch: int | None = None
    """Episodes per epoch; None = training images // batch_size (QSAM: 390 on CIFAR)."""

    batch_size: int = 128
    """Images in each meta-train and meta-test batch."""

    lr: float = 0.004
    """Adam learning rate of the mixer, constant for `constant_epochs`, then decayed to lr * final_factor."""

    weight_decay: float = 5e-4
    constant_epochs: int = 20
    final_factor: float = 1e-3
    inner_lr: float = 1e-3
    """Step size of the inner (MAML) SGD step on the mixer."""

    test_weight: float = 1.0
    base_weight: float = 1.0
    qac: bool = True
    """Weight the episode losses by c(Q), as QSAM does."""

    base_qualities: tuple[int, ...] = QSAM_BASE_QUALITIES
    held_out_qualities: tuple[int, ...] = QSAM_META_TEST_QUALITIES
    eval_qualities: tuple[int, ...] = (90, 70, 50, 30, 10)
    """Validation qualities; the best epoch has the best mean top-1 over them (QSAM: 18 anchors)."""

    seed: int = 0
    num_workers: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        flags = {"epochs": "--epochs", "batch_size": "--batch-size", "held_out_qualities": "--held-out"}
        flags |= {"eval_qualities": "--eval-qualities", "base_qualities": "the base_qualities setting"}
        for name in ("epochs", "batch_size"):
            check(getattr(self, name) >= 1, f"{flags[name]} must be >= 1, got {getattr(self, name)}")
        check(
            self.steps_per_epoch is None or self.steps_per_epoch >= 1,
            f"--steps must be >= 1, got {self.steps_per_epoch}",
        )
        check(self.lr > 0, f"--lr must be > 0, got {self.lr}")
        check(self.constant_epochs >= 0, f"--constant-epochs must be >= 0, got {self.constant_epochs}")
        check(
            0 < self.final_factor <= 1, f"the final_factor setting must be in (0, 1], got {self.final_factor}"
        )
        for name in ("base_qualities", "held_out_qualities", "eval_qualities"):
            object.__setattr__(self, name, tuple(int(q) for q in getattr(self, name)))
            qualities = getattr(self, name)
            check(
                bool(qualities) and all(1 <= q <= 100 for q in qualities),
                f"{flags[name]} must be JPEG qualities in 1..100, got {qualities}",
            )
        check(self.device in DEVICES, f"--device must be one of {DEVICES}, got {self.device!r}")

    def lr_factor(self, epoch: int) -> float:
        """QSAM's schedule: 1 up to `constant_epochs`, then exponential down to `final_factor` at the end."""
        decay = self.epochs - (self.constant_epochs + 1)
        if epoch < self.constant_epochs or decay <= 0:
            return 1.0
        return self.final_factor ** ((epoch - self.constant_epochs) / decay)


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
        self.loss_fn = qac_weighted_loss if config.qac else _plain_ce
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

    def _save(self, epoch: int, val: dict[int, float], is_best: bool) -> None:
        loaded = self.loaded
        save_last_and_best(
            self.out_dir,
            self.model,
            arch=loaded.arch,
            arch_kwargs=loaded.arch_kwargs,
            class_names=loaded.class_names,
            extra={**self.extra, "epoch": epoch, "val_top1": {str(q): v for q, v in val.items()}},
            is_best=is_best,
        )

    def run(self) -> MetaResult:
        config = self.config
        history: list[MetaEpochEnd] = []
        best_epoch, best = 0, -1.0
        for epoch in range(config.epochs):
            tick = time.perf_counter()
            losses = self._train_epoch(epoch)
            self.scheduler.step()
            self.model.eval()
            val = {q: _top1(self.model, self.val_set, q, config, self.device) for q in config.eval_qualities}
            mean = sum(val.values()) / len(val)
            is_best = mean > best
            if is_best:
                best_epoch, best = epoch + 1, mean
            self._save(epoch + 1, val, is_best)
            end = MetaEpochEnd(
                epoch + 1, config.epochs, losses, val, mean, is_best, time.perf_counter() - tick
            )
            history.append(end)
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
) -> MetaResult:
    """QSAM's meta stage on a base-stage checkpoint (`dctq train --qabn`): trains `model.qabn_mixer`
    with `meta_step` episodes, one process, and writes best.pt / last.pt into `out_dir`
    (extra["qsam"]["stage"] = "meta", so evaluation mixes the branches with the mixer).

    Args:
        train_set: training JpegFolder / RgbJpegFolder (train=True) of the base stage's data.
        val_set: its evaluation-mode validation set; re-compressed at each of config.eval_qualities.
        progress: called with a MetaEpochEnd after every epoch.

    Raises:
        ModelError: the checkpoint has no QABN layers. DataError: empty data. ConfigError: bad config.
    """
    return _MetaRun(config, base_checkpoint, train_set, val_set, out_dir, progress).run()
