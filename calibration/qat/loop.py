"""Quantization-aware training: plain QAT (learnable PAMS ranges) and ODM, one process or several under
torchrun.

    qmodel, info = qat_quantize(fp_model, recipe, dataset, QatConfig(method="odm", **method_defaults("odm")),
                                task="sr", state_path=Path("q.qat-state.pt"))

1. `quantize_model(fp, recipe)` (BN left unfolded for training and folded at the end, as zero-shot does);
   with ODM offsets, the channel statistics of the float features pick the layers first (offsets.py) and
   the recipe records them; the ranges are calibrated on `calib_batches` training batches (the recipe's
   calibrator), identical on every process.
2. ODM v2: the layer-wise weight clipping ratios (weight_clip.py).
3. Activation ranges become learnable (PAMS's clip, or LSQ); weight ranges follow the per-channel max of
   the current weights (times the v2 ratio) after every step, or are learnable.
4. Adam on the weights (`lr`) and the ranges and offsets (`range_lr`), cosine to 0 over all steps. Each step:
   reconstruction loss (task: L1 / cross-entropy) + the weighted ODM regularisers on the features entering
   quantized layers; with `cooperative`, the regulariser gradient is gated per element (gradients.py) and
   the gradient conflict ratio is counted per layer.
5. After every epoch the resume state goes to `state_path` (rank 0); `resume=True` continues from it.

Model and data order are seeded per epoch from (seed, epoch), so a resumed run repeats the straight one.
Under torchrun the model is wrapped in DDP (the cooperative path reduces its two gradients itself).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset

from ...common.devices import resolve_device
from ...common.errors import ConfigError, QuantizationError
from ...common.files import atomic_path
from ...common.seeding import mix_seed
from ...common.torch_files import load_torch_file
from ...jpeg.dataset import collate_samples, make_loader
from .. import distributed as dd
from ..quant.model import calibrate, fold_quantized_bn, iter_quantizers, quantize_model
from ..quant.modules import QuantConv2d, QuantConvTranspose2d, QuantLinear
from ..quant.offsets import OffsetQuantizer
from ..quant.recipe import QuantRecipe
from .config import QatConfig, QatEpochEnd, QatEvent, QatStep
from .data import qat_step
from .gradients import cooperative_backward, layer_of
from .offsets import channel_stats, init_offsets, select_offsets
from .regularizers import FeatureTap, mismatch_loss, variance_loss
from .weight_clip import search_weight_clip, track_weight_ranges

logger = logging.getLogger(__name__)

STATE_FORMAT = "dctq.qat_state"


def _has_bn(model: nn.Module) -> bool:
    return any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def _range_params(qmodel: nn.Module) -> list[nn.Parameter]:
    """Learnable quantizer ranges and ODM offsets (their own learning rate, no weight decay)."""
    params = []
    for _, q in iter_quantizers(qmodel):
        params += [p for p in q.parameters(recurse=False) if p.requires_grad]
    for m in qmodel.modules():
        if isinstance(m, OffsetQuantizer):
            params += [p for p in (m.shift, m.log_scale) if p is not None]
    return params


def _set_learnable(qmodel: nn.Module, config: QatConfig) -> None:
    weight_ids = {
        id(m.weight_quantizer)
        for m in qmodel.modules()
        if isinstance(m, QuantConv2d | QuantConvTranspose2d | QuantLinear)
    }
    for _, q in iter_quantizers(qmodel):
        if id(q) in weight_ids:
            q.set_learnable(config.weight_ranges == "learn", "lsq" if config.gradient == "lsq" else "pams")
        else:
            q.set_learnable(True, config.gradient)


def _broadcast(module: nn.Module, env: dd.DistEnv) -> None:
    if env.distributed:
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, src=0)


class _QatRun:
    """One QAT run; an object only to share its pieces between the setup, the steps and the files."""

    def __init__(
        self,
        fp: nn.Module,
        recipe: QuantRecipe,
        dataset: Dataset,
        config: QatConfig,
        task: str,
        env: dd.DistEnv,
        device: torch.device,
    ) -> None:
        self.fp, self.dataset, self.config, self.task, self.env, self.device = (
            fp,
            dataset,
            config,
            task,
            env,
            device,
        )
        self.fold_later = recipe.fold_bn and _has_bn(fp)
        self.recipe = dataclasses.replace(recipe, fold_bn=False) if self.fold_later else recipe
        self.ratios: dict[str, float] = {}
        self.history: list[dict[str, Any]] = []
        self.start_epoch = 0

    # ------------------------------------------------------------------------------------ data

    def _loader(self, epoch: int, distributed: bool) -> torch.utils.data.DataLoader:
        return make_loader(
            self.dataset,
            self.config.batch_size,
            shuffle=True,
            num_workers=self.config.num_workers,
            seed=mix_seed(self.config.seed, epoch),
            distributed=distributed,
            drop_last=True,
            collate_fn=collate_samples,
        )

    def _calib_loop(self) -> Callable[[nn.Module], None]:
        """The calibration batches: the first `calib_batches` of a loader seeded apart from training,
        the same on every process (so every process calibrates the same ranges)."""
        batches = []
        for batch in self._loader(-1, distributed=False):
            batches.append(batch)
            if len(batches) == self.config.calib_batches:
                break

        def loop(model: nn.Module) -> None:
            for batch in batches:
                qat_step(self.task, model, batch, self.device)

        return loop

    # ----------------------------------------------------------------------------------- setup

    def build(self) -> nn.Module:
        """The calibrated student (offsets chosen and initialised, weight clipping searched)."""
        torch.manual_seed(self.config.seed)
        loop = self._calib_loop()
        recipe = self.recipe
        stats = None
        if self.config.offsets != "none":
            probe = quantize_model(self.fp, recipe)  # quantizers disabled: the float features
            stats = channel_stats(probe, loop)
            recipe = dataclasses.replace(
                recipe, offsets=select_offsets(stats, self.config.offsets, self.config.offset_fraction)
            )
            logger.info("ODM offsets on %d layers: %s", len(recipe.offsets), recipe.offsets)
        self.recipe = recipe
        qmodel = quantize_model(self.fp, recipe)
        if stats is not None:
            init_offsets(qmodel, stats)
        calibrate(qmodel, loop)
        if self.config.weight_clip_correction:
            self.ratios = search_weight_clip(qmodel, loop)
        return qmodel

    # ------------------------------------------------------------------------------- files

    def save(self, path: Path, qmodel: nn.Module, optimizer, scheduler, epoch: int, sums: dict) -> None:  # type: ignore[no-untyped-def]
        state = {
            "format": STATE_FORMAT,
            "version": 1,
            "epoch": epoch,
            "config": self.config.to_dict(),
            "recipe": self.recipe.to_dict(),
            "ratios": dict(self.ratios),
            "model": {k: v.detach().cpu() for k, v in qmodel.state_dict().items()},
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "history": list(self.history),
            "conflicts": {k: list(v) for k, v in sums.items()},
        }
        with atomic_path(path) as tmp:
            torch.save(state, tmp)

    def load(self, path: Path) -> dict[str, Any]:
        state = load_torch_file(
            path, "dctq QAT state", QuantizationError, fmt=STATE_FORMAT, hint="; was it cut short?"
        )
        saved = QatConfig.from_dict(state["config"])
        changed = list(saved.changes(self.config))
        if changed:
            raise ConfigError(
                f"--resume: options {changed} differ from the QAT run saved in {path}; only "
                f"{list(QatConfig.RESUMABLE)} may change (or drop --resume and give another --out)"
            )
        recipe = QuantRecipe.from_dict(state["recipe"])
        if dataclasses.replace(recipe, offsets=()) != dataclasses.replace(self.recipe, offsets=()):
            raise ConfigError(
                f"--resume: {path} was made with another recipe ({recipe.to_dict()}); pass the same --bits"
            )
        self.recipe, self.ratios = recipe, dict(state["ratios"])
        self.history, self.start_epoch = list(state["history"]), int(state["epoch"])
        return state

    # --------------------------------------------------------------------------------- run

    def run(
        self, state_path: Path | None, resume: bool, progress: Callable[[QatEvent], None] | None
    ) -> tuple[nn.Module, dict]:
        config = self.config
        state = self.load(state_path) if resume and state_path is not None and state_path.is_file() else None
        if resume and state is None:
            raise QuantizationError(
                f"--resume: no QAT state {state_path} to continue; drop --resume to start afresh"
            )
        if state is not None:
            qmodel = quantize_model(self.fp, self.recipe)
            _set_learnable(qmodel, config)
            qmodel.load_state_dict(state["model"])
        else:
            qmodel = self.build()
            _set_learnable(qmodel, config)
        qmodel.to(self.device).eval()  # BN statistics frozen (affine trains), as zero-shot fine-tuning
        _broadcast(qmodel, self.env)
        ranges = _range_params(qmodel)
        range_ids = {id(p) for p in ranges}
        named = [(n, p) for n, p in qmodel.named_parameters() if p.requires_grad]
        weights = [p for _, p in named if id(p) not in range_ids]
        optimizer = torch.optim.Adam(
            [
                {"params": weights, "lr": config.lr, "weight_decay": config.weight_decay},
                {"params": ranges, "lr": config.range_lr, "weight_decay": 0.0},
            ]
        )
        total = config.total_steps
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(1.0, s / max(1, total))))
        )
        # per-parameter sums of conflicting / counted gradient elements (cooperative runs)
        sums: dict[str, list[int]] = {}
        if state is not None:
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            sums = {k: list(v) for k, v in state["conflicts"].items()}
        cooperative = config.cooperative and config.regularised
        model = qmodel if cooperative else dd.wrap_model(qmodel, self.device, self.env)
        tap = FeatureTap(qmodel)
        report = progress if self.env.is_main else None
        for epoch in range(self.start_epoch, config.epochs):
            torch.manual_seed(mix_seed(config.seed, epoch) + self.env.rank)
            tick = time.perf_counter()
            loader = self._loader(epoch, self.env.distributed)
            if self.env.distributed:
                loader.sampler.set_epoch(epoch)
            epoch_sums = torch.zeros(6, dtype=torch.float64)  # loss, rec, reg, score, samples, steps
            window = torch.zeros(6, dtype=torch.float64)
            conflict_window = [0, 0]
            for step, batch in zip(range(config.steps_per_epoch), _cycle(loader), strict=False):
                regularised = config.regularised
                with tap if regularised else _null():
                    rec, score, count = qat_step(self.task, model, batch, self.device)
                reg = torch.zeros((), device=self.device)
                if config.variance_weight:
                    reg = reg + config.variance_weight * variance_loss(tap.features)
                if config.mismatch_weight:
                    reg = reg + config.mismatch_weight * mismatch_loss(tap.features, tap.quantizers)
                optimizer.zero_grad(set_to_none=True)
                if cooperative:
                    conflicts, counted = cooperative_backward(rec, reg, [p for _, p in named], 1.0, self.env)
                    for (name, _), c, n in zip(named, conflicts.tolist(), counted.tolist(), strict=True):
                        s = sums.setdefault(name, [0, 0])
                        s[0], s[1] = s[0] + c, s[1] + n
                    conflict_window[0] += int(conflicts.sum())
                    conflict_window[1] += int(counted.sum())
                else:
                    (rec + reg).backward()
                lr = optimizer.param_groups[0]["lr"]
                optimizer.step()
                scheduler.step()
                if config.weight_ranges == "track":
                    track_weight_ranges(qmodel, self.ratios)
                tap.features = {}
                window += torch.tensor(
                    [
                        float(rec.detach() + reg.detach()) * count,
                        float(rec.detach()) * count,
                        float(reg.detach()) * count,
                        float(score),
                        count,
                        1.0,
                    ],
                    dtype=torch.float64,
                )
                last = step + 1 == config.steps_per_epoch
                if (step + 1) % config.log_every == 0 or last:
                    if report is not None:
                        w = window.tolist()
                        conflict = conflict_window[0] / conflict_window[1] if conflict_window[1] else None
                        report(
                            QatStep(
                                epoch + 1,
                                step + 1,
                                config.steps_per_epoch,
                                w[0] / w[4],
                                w[1] / w[4],
                                w[2] / w[4],
                                self._score(w[3] / w[4]),
                                conflict,
                                lr,
                            )
                        )
                    epoch_sums += window
                    window.zero_()
                    conflict_window = [0, 0]
            totals = dd.all_reduce_sum(epoch_sums, self.env).tolist()
            n = max(totals[4], 1)
            conflict = self._conflict_total(sums)
            end = QatEpochEnd(
                epoch + 1,
                config.epochs,
                totals[0] / n,
                totals[1] / n,
                totals[2] / n,
                self._score(totals[3] / n),
                conflict,
                time.perf_counter() - tick,
            )
            self.history.append(dataclasses.asdict(end))
            if state_path is not None and self.env.is_main:
                self.save(state_path, qmodel, optimizer, scheduler, epoch + 1, sums)
            dd.barrier(self.env)
            if report is not None:
                report(end)
            logger.info("QAT epoch %d/%d: loss %.5f", epoch + 1, config.epochs, end.loss)
        return self.finish(qmodel, sums)

    def _score(self, value: float) -> float:
        return value  # PSNR (dB) or the share of correct top-1

    @staticmethod
    def _conflict_total(sums: dict[str, list[int]]) -> float | None:
        c = sum(v[0] for v in sums.values())
        n = sum(v[1] for v in sums.values())
        return c / n if n else None

    def finish(self, qmodel: nn.Module, sums: dict[str, list[int]]) -> tuple[nn.Module, dict]:
        for _, q in iter_quantizers(qmodel):
            q.set_learnable(False)
        final = dataclasses.replace(self.recipe, fold_bn=True) if self.fold_later else self.recipe
        if self.fold_later:
            fold_quantized_bn(qmodel, final)
            track_weight_ranges(qmodel, self.ratios)
        qmodel.eval()
        per_layer: dict[str, list[int]] = {}
        for name, (c, n) in sums.items():
            s = per_layer.setdefault(layer_of(name), [0, 0])
            s[0], s[1] = s[0] + c, s[1] + n
        info = {
            "qat": self.config.fields_dict(),
            "offsets": [list(pair) for pair in final.offsets],
            "weight_clip": dict(self.ratios),
            "conflict_ratio": {name: c / n for name, (c, n) in per_layer.items() if n},
            "conflict_ratio_total": self._conflict_total(sums),
            "history": list(self.history),
        }
        return qmodel, info


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _cycle(loader: torch.utils.data.DataLoader) -> Iterator[Any]:
    """The loader's batches, started again when it runs out (a small classifier set and many steps)."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise QuantizationError(
                "the QAT data loader yields no batch; give more images or a smaller --batch-size"
            )


def qat_quantize(
    fp_model: nn.Module,
    recipe: QuantRecipe,
    dataset: Dataset,
    config: QatConfig,
    *,
    task: str,
    state_path: Path | str | None = None,
    resume: bool = False,
    progress: Callable[[QatEvent], None] | None = None,
    env: dd.DistEnv | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """A quantized copy of `fp_model` trained on `dataset` (module docstring); returns (student in eval
    mode, info: config, offsets, weight clipping ratios, gradient conflict ratio per layer, history).

    Raises QuantizationError (bad recipe, nothing to resume, unusable data), ConfigError (a resume with
    other options), and what quantize_model / calibrate raise.
    """
    env = env or dd.detect_env()
    device = resolve_device(config.device, local_rank=env.local_rank)
    fp_model.to(device).eval()
    path = Path(state_path) if state_path is not None else None
    with dd.process_group(device, env):
        run = _QatRun(fp_model, recipe, dataset, config, task, env, device)
        return run.run(path, resume, progress)
