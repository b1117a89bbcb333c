"""What the training loop does per task (models.registry.TASKS): build the model, one step's loss and running
statistics, validation and the best-epoch criterion. The loop (loop.py) owns everything else (data order,
optimiser, schedule, AMP, DDP, checkpoints, resume, progress), so a new task is one more class here and
one entry in TASKS_BY_NAME.

- ClassifyTask: cross-entropy (label smoothing, QSAM's QAC weights and QABN routing), top-1/top-5; the best
  epoch has the highest validation top-1.
- SrTask (models.sr, registry task "sr"): L1 between the output and the HR patch (EDSR); the running
  score is the patches' PSNR on Y; validation scores every held-out image whole (PSNR/SSIM on Y, sr.py's
  `validate_sr`); the best epoch has the highest validation PSNR.
- AutoencodeTask (models.dq): L_rec + beta * L_latent of the model's head; validation reports bits/dim,
  code rates, PSNR and codebook usage (models.dq.rate.CodeStats); the best epoch has the lowest bits/dim
  (uniform code-rate bound; the mean squared error for the "mse" head).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset, Subset

from ...common.errors import ConfigError, DataError
from ...jpeg.batch import model_inputs
from ...jpeg.dataset import make_loader
from ...models.dq.autoencoder import HierarchicalAE
from ...models.dq.rate import CodeStats
from ...models.metrics import topk_correct
from ...models.qabn import QSAM_BASE_QUALITIES, qabn_routing
from ...models.qabn_routing import oracle_branch_index
from ...models.registry import get_model_info
from .. import distributed as dd
from ..qsam.qac import qac_weighted_loss
from .config import TrainConfig
from .events import ValMetrics
from .sr import sr_step, validate_sr

Autocast = Callable[[], contextlib.AbstractContextManager[None]]


class TrainTask:
    """The per-task part of a training run (see the module docstring). A window row of a training step is a
    float64 vector [loss * n, *sums of `metric_names`, n]; validation sums are a float64 vector of
    `val_size(core)` entries. Both are summed over processes by the loop."""

    name: ClassVar[str]
    metric_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.check()

    def check(self) -> None:
        """Raise ConfigError for options of `config` that do not apply to this task."""

    def model_kwargs(self, class_names: list[str]) -> dict[str, Any]:
        """Builder arguments the data decides (a classifier's number of classes)."""
        return {}

    def checkpoint_class_names(self, class_names: list[str]) -> list[str]:
        """The class names the checkpoints record."""
        return []

    def train_step(
        self,
        model: nn.Module,
        core: nn.Module,
        batch: Mapping[str, Any],
        device: torch.device,
        autocast: Autocast,
    ) -> tuple[Tensor, Tensor]:
        """(loss to back-propagate, window row) of one training batch; `model` may be DDP-wrapped, `core` not."""
        raise NotImplementedError

    def summarize(self, window: list[float]) -> tuple[float, float | None, dict[str, float]]:
        """(mean loss, top-1 or None, other running means) of a summed window."""
        n = max(window[-1], 1.0)
        metrics = {name: v / n for name, v in zip(self.metric_names, window[1:-1], strict=True)}
        return window[0] / n, metrics.pop("top1", None), metrics

    @torch.no_grad()
    def validate(
        self, core: nn.Module, val_set: Dataset, env: dd.DistEnv, device: torch.device, autocast: Autocast
    ) -> ValMetrics:
        """ValMetrics over the whole `val_set`, `core` in eval mode: each process sums `val_batch` over an
        exact shard (DistributedSampler would pad with repeated images), the sums are all-reduced."""
        shard = Subset(val_set, range(env.rank, len(val_set), env.world_size))  # type: ignore[arg-type]
        sums = torch.zeros(self.val_size(core), dtype=torch.float64, device=device)
        if len(shard):
            loader = make_loader(
                shard, self.config.batch_size, shuffle=False, num_workers=self.config.num_workers
            )
            for batch in loader:
                sums += self.val_batch(core, batch, device, autocast)
        return self.val_metrics(core, dd.all_reduce_sum(sums, env))

    def val_size(self, core: nn.Module) -> int:
        raise NotImplementedError

    def val_batch(
        self, core: nn.Module, batch: Mapping[str, Any], device: torch.device, autocast: Autocast
    ) -> Tensor:
        """The validation sums of one batch (float64, `val_size` entries), `core` in eval mode, no grad."""
        raise NotImplementedError

    def val_metrics(self, core: nn.Module, sums: Tensor) -> ValMetrics:
        """ValMetrics of the validation sums over every process."""
        raise NotImplementedError

    def score(self, val: ValMetrics) -> float:
        """Higher is better: what picks best.pt."""
        return -val.loss


class ClassifyTask(TrainTask):
    """Classifiers: see the module docstring."""

    name = "classify"
    metric_names = ("top1",)

    def __init__(self, config: TrainConfig) -> None:
        super().__init__(config)
        # QSAM's protocol: every image at all base qualities per step; with --qualities, one random each.
        self.quality_versions = config.versions or (config.qabn and config.train_qualities is None)
        self.chunks = len(QSAM_BASE_QUALITIES) if self.quality_versions else 1

    def model_kwargs(self, class_names: list[str]) -> dict[str, Any]:
        if not class_names:
            raise DataError("train_set has no class_names; use a dctq JpegFolder / RgbJpegFolder")
        return {"num_classes": len(class_names)}

    def checkpoint_class_names(self, class_names: list[str]) -> list[str]:
        return list(class_names)

    def _routing(self, core: nn.Module, branch: Tensor | None) -> contextlib.AbstractContextManager[None]:
        return qabn_routing(core, branch) if branch is not None else contextlib.nullcontext()

    def _loss(self, logits: Tensor, labels: Tensor, qt: Tensor) -> Tensor:
        config = self.config
        if config.qac:
            if config.qac_normalize:
                return qac_weighted_loss(logits, labels, qt, config.label_smoothing, normalize=True)
            # QSAM sums c(Q_q) * CE_q over the K quality chunks: K times the per-sample mean.
            return self.chunks * qac_weighted_loss(logits, labels, qt, config.label_smoothing)
        return F.cross_entropy(logits, labels, label_smoothing=config.label_smoothing)

    def train_step(
        self,
        model: nn.Module,
        core: nn.Module,
        batch: Mapping[str, Any],
        device: torch.device,
        autocast: Autocast,
    ) -> tuple[Tensor, Tensor]:
        inputs, labels = model_inputs(batch, device), batch["label"].to(device)
        branch = None
        if self.config.qabn:
            branch = batch.get("branch")
            if branch is None:
                branch = oracle_branch_index(inputs[-1])
        with self._routing(core, branch), autocast():
            logits = model(*inputs)
        loss = self._loss(logits.float(), labels, inputs[-1])
        with torch.no_grad():
            correct = topk_correct(logits, labels, (1,))[0]
            n = labels.shape[0]
            row = torch.stack(
                [
                    loss.detach().double() * n,
                    correct.double(),
                    torch.tensor(float(n)).double().to(correct.device),
                ]
            )
        return loss, row

    def val_size(self, core: nn.Module) -> int:
        return 4  # loss sum, top-1, top-5, images

    def val_batch(
        self, core: nn.Module, batch: Mapping[str, Any], device: torch.device, autocast: Autocast
    ) -> Tensor:
        inputs, labels = model_inputs(batch, device), batch["label"].to(device)
        branch = oracle_branch_index(inputs[-1]) if self.config.qabn else None
        with self._routing(core, branch), autocast():
            logits = core(*inputs).float()
        top1, top5 = topk_correct(logits, labels)
        loss = F.cross_entropy(logits, labels, reduction="sum").double()
        return torch.stack(
            [loss, top1.double(), top5.double(), torch.tensor(float(labels.shape[0]), device=device).double()]
        )

    def val_metrics(self, core: nn.Module, sums: Tensor) -> ValMetrics:
        loss, top1, top5, n = sums.tolist()
        if n == 0:
            raise DataError("the validation set is empty; give more images or a larger --val-fraction")
        return ValMetrics(loss / n, top1 / n, top5 / n, int(n))

    def score(self, val: ValMetrics) -> float:
        return float(val.top1 or 0.0)


_CLASSIFIER_OPTIONS = {
    "qabn": "--qabn",
    "qac": "--qac",
    "versions": "--versions",
    "label_smoothing": "--label-smoothing",
}


class AutoencodeTask(TrainTask):
    """Autoencoders (models.dq): see the module docstring."""

    name = "autoencode"
    metric_names = ("recon", "latent")

    def check(self) -> None:
        for field, flag in _CLASSIFIER_OPTIONS.items():
            if getattr(self.config, field):
                raise ConfigError(f"{flag} applies to classifiers only; {self.config.arch} is an autoencoder")

    @staticmethod
    def _model(core: nn.Module) -> HierarchicalAE:
        if not isinstance(core, HierarchicalAE):
            raise ConfigError(
                f"the autoencoder task needs a models.dq HierarchicalAE, got {type(core).__name__}"
            )
        return core

    def train_step(
        self,
        model: nn.Module,
        core: nn.Module,
        batch: Mapping[str, Any],
        device: torch.device,
        autocast: Autocast,
    ) -> tuple[Tensor, Tensor]:
        ae = self._model(core)
        x = batch["x"].to(device, non_blocking=True)
        with autocast():
            output = model(x)
        loss, recon = ae.loss(output, ae.pixels_from_input(x))
        n = float(x.shape[0])
        with torch.no_grad():
            row = torch.stack([loss.detach(), recon.detach(), output.latent_loss.detach()]).double() * n
            row = torch.cat([row, row.new_tensor([n])])
        return loss, row

    def val_size(self, core: nn.Module) -> int:
        return CodeStats(self._model(core)).values.numel()

    def val_batch(
        self, core: nn.Module, batch: Mapping[str, Any], device: torch.device, autocast: Autocast
    ) -> Tensor:
        ae = self._model(core)
        x = batch["x"].to(device, non_blocking=True)
        with autocast():
            output = ae(x)
        stats = CodeStats(ae)
        stats.add(ae.pixels_from_input(x), output.out.float(), output.codes)
        return stats.values.to(device)

    def val_metrics(self, core: nn.Module, sums: Tensor) -> ValMetrics:
        ae = self._model(core)
        stats = CodeStats(ae)
        stats.values = sums.detach().double().cpu()
        if stats.values[0] == 0:
            raise DataError("the validation set is empty; give more images or a larger --val-fraction")
        summary = stats.summary()
        loss = summary["bpd_uniform"] if summary["bpd_uniform"] is not None else summary["mse"]
        return ValMetrics(float(loss), None, None, summary["images"], summary)


class SrTask(TrainTask):
    """Super-resolution models (models.sr): see the module docstring; data, step and validation in sr.py."""

    name = "sr"
    metric_names = ("psnr",)

    def train_step(
        self,
        model: nn.Module,
        core: nn.Module,
        batch: Mapping[str, Any],
        device: torch.device,
        autocast: Autocast,
    ) -> tuple[Tensor, Tensor]:
        loss, score, n = sr_step(model, dict(batch), device)  # float32, as the SR recipe was measured
        with torch.no_grad():
            row = torch.stack(
                [loss.detach().double() * n, score.double(), loss.new_tensor(float(n)).double()]
            )
        return loss, row

    def validate(
        self, core: nn.Module, val_set: Dataset, env: dd.DistEnv, device: torch.device, autocast: Autocast
    ) -> ValMetrics:
        return validate_sr(core, val_set, env, device)  # type: ignore[arg-type]

    def score(self, val: ValMetrics) -> float:
        return float(val.psnr) if val.psnr is not None else float("-inf")


TASKS_BY_NAME: dict[str, type[TrainTask]] = {
    "classify": ClassifyTask,
    "sr": SrTask,
    "autoencode": AutoencodeTask,
}


def task_for(config: TrainConfig) -> TrainTask:
    """The TrainTask of `config.arch`'s registered task.

    Raises ModelError for an unknown architecture, ConfigError for options the task does not take or a task
    the training loop has no case for.
    """
    name = get_model_info(config.arch).task
    if name not in TASKS_BY_NAME:
        raise ConfigError(f"{config.arch} is a {name!r} model; `dctq train` has no case for that task yet")
    return TASKS_BY_NAME[name](config)
