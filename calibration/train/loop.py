"""The training loop: a registry model over a JPEG dataset, one process or several under torchrun.

`train(config, train_set, val_set, out_dir)` builds the model by name, measures the DCT stem's
statistics on training batches, trains with SGD (+Nesterov) or Adam under a cosine, multistep or
constant schedule with linear warm-up (and optional gradient-norm clipping), validates every epoch and
writes, atomically, `last.pt`, `best.pt` (the best validation score) and `last.state.pt` into `out_dir`
(what they hold: state.py). What differs per task (a classifier's cross-entropy and top-1, an
super-resolution model's L1 loss and PSNR/SSIM, an autoencoder's bits/dim) is tasks.py, one TrainTask per
registered task; the loop has no case of its own for any task.

Reproducibility: every epoch reseeds torch and the data order/augmentation from (seed, epoch), so a
run resumed from `last.pt` repeats the uninterrupted run exactly on CPU (RNG states need no saving).
Under torchrun each process trains on its shard (DistributedSampler), DDP averages gradients,
BatchNorm statistics are averaged across processes at the end of each epoch, validation counts
are summed over processes, and only rank 0 writes files and reports progress.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from ...common.devices import resolve_device
from ...common.errors import ConfigError, DataError
from ...common.seeding import mix_seed
from ...jpeg.dataset import FolderDataset, collate_samples, make_loader
from ...jpeg.recompress import QualityPolicy
from ...models.qabn import QSAM_BASE_QUALITIES, apply_qabn
from ...models.registry import create_model
from ...models.stem import DctStem, compute_stem_stats
from .. import distributed as dd
from ..qsam.data import MultiQualityDataset, collate_versions
from .config import TrainConfig
from .events import (
    EpochEnd,
    EpochStart,
    ProgressCallback,
    StepEnd,
    TrainEvent,
    TrainResult,
    ValMetrics,
)
from .schedule import determinism, lr_factor
from .state import BEST, LAST, RunProgress, check_no_run, load_run, save_epoch
from .tasks import ClassifyTask, task_for

__all__ = [
    "EpochEnd",
    "EpochStart",
    "ProgressCallback",
    "StepEnd",
    "TrainEvent",
    "TrainResult",
    "ValMetrics",
    "lr_factor",
    "train",
]

logger = logging.getLogger(__name__)


def _check_policy(name: str, dataset: Dataset, expected: QualityPolicy) -> None:
    if isinstance(dataset, FolderDataset) and dataset.qualities != expected:
        raise ConfigError(
            f"{name} re-compresses with {dataset.qualities} but the config asks for {expected} "
            "(--qualities / --eval-quality); build the datasets with calibration.train.data.build_train_data"
        )


# ------------------------------------------------------------------------------------------ run


class _Run:
    """One training run; an object only to share its many pieces between the loop's methods."""

    def __init__(
        self,
        config: TrainConfig,
        train_set: Dataset,
        val_set: Dataset | None,
        out_dir: Path,
        env: dd.DistEnv,
        device: torch.device,
        progress: ProgressCallback | None,
    ) -> None:
        self.config, self.out_dir, self.env, self.device = config, out_dir, env, device
        self.task = task_for(config)
        self.quality_versions = isinstance(self.task, ClassifyTask) and self.task.quality_versions
        self.progress = progress if env.is_main else None
        class_names = list(getattr(train_set, "class_names", []))
        self.val_set = val_set
        if self.quality_versions:
            self.train_set: Dataset = MultiQualityDataset(train_set, QSAM_BASE_QUALITIES)
            self.collate = collate_versions
        else:
            self.train_set, self.collate = train_set, collate_samples
        self.arch_kwargs = {**self.task.model_kwargs(class_names), **config.arch_kwargs}
        self.class_names = self.task.checkpoint_class_names(class_names)
        torch.manual_seed(config.seed)
        model = create_model(config.arch, **self.arch_kwargs)
        if config.qabn:
            apply_qabn(model, len(QSAM_BASE_QUALITIES))
            # The base stage routes by quality; the mixing MLP is the meta stage's to train.
            model.qabn_mixer.requires_grad_(False)
        self.core = model.to(device)
        self.use_amp = config.amp and device.type == "cuda"
        if config.amp and not self.use_amp:
            logger.warning("--amp applies to CUDA only; training in float32 on %s", device)
        self.optimizer = make_optimizer([p for p in self.core.parameters() if p.requires_grad], config)
        self.steps = len(self._train_loader(0))
        if config.max_steps_per_epoch is not None:
            self.steps = min(self.steps, config.max_steps_per_epoch)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, config=config, steps_per_epoch=self.steps)
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.start_epoch, self.best_epoch, self.best_score = 0, 0, None
        self.history: list[EpochEnd] = []

    # -------------------------------------------------------------------------------- data

    def _train_loader(self, epoch: int) -> torch.utils.data.DataLoader:
        seed = mix_seed(self.config.seed, epoch)
        loader = make_loader(
            self.train_set,
            self.config.batch_size,
            shuffle=True,
            num_workers=self.config.num_workers,
            seed=seed,
            distributed=self.env.distributed,
            collate_fn=self.collate,
            pin_memory=self.device.type == "cuda",
        )
        if self.config.num_workers == 0 and hasattr(self.train_set, "reseed"):
            self.train_set.reseed(seed + self.env.rank)  # make_loader only reseeds its own dataset types
        return loader

    def _stem_stats(self) -> None:
        stem = getattr(self.core, "stem", None)
        if not isinstance(stem, DctStem):
            return
        if self.env.is_main:
            loader = make_loader(
                self.train_set,
                self.config.batch_size,
                shuffle=True,
                num_workers=self.config.num_workers,
                seed=mix_seed(self.config.seed, -1),
                collate_fn=self.collate,
            )
            batches = itertools.islice(loader, self.config.stem_stats_batches)
            stem.set_stats(compute_stem_stats((b["y"], b["cbcr"], b["qt"]) for b in batches))
        if self.env.distributed:
            for buf in stem.buffers():
                torch.distributed.broadcast(buf, src=0)

    # ----------------------------------------------------------------- files: resume, save

    def _resume(self) -> None:
        scaler = self.scaler if self.use_amp else None
        done = load_run(
            self.out_dir,
            self.config,
            self.device,
            self.core,
            self.optimizer,
            self.scheduler,
            scaler,
            repair=self.env.is_main,  # rank 0 writes the run's files
        )
        self.start_epoch, self.best_epoch, self.best_score, self.history = done
        logger.info("resuming %s after epoch %d", self.out_dir, self.start_epoch)

    def _save(self, epoch: int, val: ValMetrics | None, is_best: bool) -> None:
        save_epoch(
            self.out_dir,
            self.core,
            self.optimizer,
            self.scheduler,
            self.scaler,
            RunProgress(epoch, self.best_epoch, self.best_score, self.history),
            config=self.config,
            arch_kwargs=self.arch_kwargs,
            class_names=self.class_names,
            val=val,
            is_best=is_best,
        )

    # ------------------------------------------------------------------------------- steps

    def _autocast(self) -> contextlib.AbstractContextManager[None]:
        return torch.autocast(self.device.type, dtype=torch.float16, enabled=self.use_amp)

    def _train_epoch(self, model: nn.Module, epoch: int) -> tuple[float, float | None, dict[str, float]]:
        loader = self._train_loader(epoch)
        if self.env.distributed:
            loader.sampler.set_epoch(epoch)
        model.train()
        totals: Tensor | None = None  # the task's window rows: [loss * n, metric sums..., n]
        window: Tensor | None = None
        tick = time.perf_counter()
        for step, batch in enumerate(loader, start=1):
            loss, row = self.task.train_step(model, self.core, batch, self.device, self._autocast)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if self.config.clip_grad_norm is not None:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.core.parameters(), self.config.clip_grad_norm)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            lr = self.optimizer.param_groups[0]["lr"]
            self.scheduler.step()
            window = row if window is None else window + row
            if step % self.config.log_every == 0 or step == self.steps:
                w = window.tolist()
                now = time.perf_counter()
                if self.progress is not None:
                    mean_loss, top1, metrics = self.task.summarize(w)
                    rate = w[-1] * self.env.world_size / max(now - tick, 1e-9)
                    psnr = metrics.pop("psnr", None)  # StepEnd's own field (SR models)
                    self.progress(
                        StepEnd(epoch + 1, step, self.steps, mean_loss, top1, rate, lr, metrics, psnr)
                    )
                totals = window if totals is None else totals + window
                window = None
                tick = now
            if step >= self.steps:
                break
        if totals is None and window is None:
            raise DataError("the training set gave no batch; give more images or a smaller --batch-size")
        summed = totals if window is None else (window if totals is None else totals + window)
        return self.task.summarize(dd.all_reduce_sum(summed, self.env).tolist())

    @torch.no_grad()
    def _validate(self) -> ValMetrics:
        if self.val_set is None:
            raise DataError("no validation set")
        self.core.eval()
        return self.task.validate(self.core, self.val_set, self.env, self.device, self._autocast)

    # --------------------------------------------------------------------------------- run

    def run(self, resume: bool) -> TrainResult:
        if resume:
            self._resume()
        else:
            check_no_run(self.out_dir)
            self._stem_stats()
        model = dd.wrap_model(self.core, self.device, self.env)
        for epoch in range(self.start_epoch, self.config.epochs):
            torch.manual_seed(mix_seed(self.config.seed, epoch) + self.env.rank)
            if self.progress is not None:
                self.progress(EpochStart(epoch + 1, self.config.epochs, self.steps))
            tick = time.perf_counter()
            lr = self.optimizer.param_groups[0]["lr"]
            train_loss, train_top1, train_metrics = self._train_epoch(model, epoch)
            train_psnr = train_metrics.pop("psnr", None)  # EpochEnd's own field (SR models)
            dd.sync_buffers(self.core, self.env)
            val = self._validate() if self.val_set is not None else None
            score = self.task.score(val) if val is not None else None
            is_best = score is None or self.best_score is None or score > self.best_score
            if is_best:
                self.best_epoch, self.best_score = epoch + 1, score
            end = EpochEnd(
                epoch + 1,
                self.config.epochs,
                train_loss,
                train_top1,
                val,
                is_best,
                time.perf_counter() - tick,
                lr,
                train_metrics,
                train_psnr,
            )
            self.history.append(end)
            if self.env.is_main:
                self._save(epoch + 1, val, is_best)
            dd.barrier(self.env)
            logger.info(
                "epoch %d/%d: train loss %.4f%s%s",
                epoch + 1,
                self.config.epochs,
                train_loss,
                f" top-1 {train_top1:.4f}" if train_top1 is not None else "",
                f", val loss {val.loss:.4f}" + (f" top-1 {val.top1:.4f}" if val.top1 is not None else "")
                if val
                else "",
            )
            if self.progress is not None:
                self.progress(end)
        self.core.eval()
        best = self._best_val()
        return TrainResult(
            out_dir=self.out_dir,
            best_path=self.out_dir / BEST,
            last_path=self.out_dir / LAST,
            best_epoch=self.best_epoch,
            best_top1=best.top1 if best is not None else None,
            best_psnr=best.psnr if best is not None else None,
            start_epoch=self.start_epoch,
            history=tuple(self.history),
            model=self.core,
            task=self.task.name,
        )

    def _best_val(self) -> ValMetrics | None:
        return next((h.val for h in self.history if h.epoch == self.best_epoch), None)


def make_optimizer(params: list[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov) or Adam (beta1 = momentum) over `params`, as `config.optimizer` says."""
    if config.optimizer == "adam":
        return torch.optim.Adam(
            params, lr=config.lr, betas=(config.momentum, 0.999), weight_decay=config.weight_decay
        )
    return torch.optim.SGD(
        params,
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        nesterov=config.nesterov,
    )


def train(
    config: TrainConfig,
    train_set: Dataset,
    val_set: Dataset | None,
    out_dir: Path,
    *,
    resume: bool = False,
    progress: ProgressCallback | None = None,
) -> TrainResult:
    """Train `config.arch` on `train_set`, validating on `val_set` each epoch; checkpoints go to `out_dir`.

    Args:
        train_set: a training dataset whose items collate to batches of y/cbcr (DCT models) or x
            (RGB models) with qt and label, e.g. from `calibration.train.data.build_train_data`;
            needs `class_names`. With `config.qabn` it must be a JpegFolder / RgbJpegFolder.
        val_set: evaluation-mode dataset of the same kind, or None (best.pt then follows last.pt).
        out_dir: created if needed; must not hold a run unless `resume`.
        resume: continue the run in `out_dir` after its last completed epoch.
        progress: called with EpochStart / StepEnd / EpochEnd events (rank 0 only).

    Under torchrun (WORLD_SIZE > 1) joins the process group (NCCL on CUDA, gloo on CPU) unless one
    is already initialised; batch_size is then per process.

    Raises:
        ConfigError: datasets that do not follow the config's quality policy, or a resume whose
            options differ. DataError: bad data, an existing run without `resume`, nothing to resume.
        ModelError: unknown architecture or unreadable checkpoints. BackendUnavailable: no CUDA/NCCL.
    """
    out_dir = Path(out_dir)
    policy = QualityPolicy(train_qualities=config.train_qualities, test_quality=config.eval_quality)
    _check_policy("train_set", train_set, policy)
    if val_set is not None:
        _check_policy("val_set", val_set, policy)
    env = dd.detect_env()
    device = resolve_device(config.device, local_rank=env.local_rank)
    with dd.process_group(device, env), determinism(device):
        if env.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
        run = _Run(config, train_set, val_set, out_dir, env, device, progress)
        return run.run(resume)
