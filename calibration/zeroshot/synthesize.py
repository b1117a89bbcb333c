"""Zero-shot calibration data: IntraQ synthesis (Zhong et al., CVPR 2022) from a trained FP model alone.

`synthesize(teacher, SynthConfig(), out)` makes `num` images in batches. Per batch (METHODS.md section 3):
labels uniform, IJG qualities uniform in `qualities` (DCT models see the quantized coefficients a JPEG of
that quality would hold), images N(0, 1) in the model's normalised input space (normalised RGB for RGB
models; for DCT models the stem-normalised coefficients by default, see images.py for why and for the
pixel alternative `dct_space="pixels"`), optimised with Adam(lr 0.5) and
ReduceLROnPlateau(patience 50, factor 0.1, min_lr 1e-4) on the total loss for `iterations` steps of

    L = L_BNS + L_SIL + L_MDC          (method "intraq"; losses.py)

with local object reinforcement: with probability 1/2 per step the whole batch passes through per-image
RandomResizedCrop(scale (0.5, 1), ratio (3/4, 4/3)) + horizontal flip, in pixel space before any DCT.
Method "bnstats" is the usual BN-statistics baseline: inputs optimised directly as in ZeroQ, with a
cross-entropy term on uniform labels (what GDFQ's generator optimises, here with weight 1 on both):
L = L_BNS + CE, no LOR, SIL or MDC, the same optimiser and schedule. `lor`, `sil` (else CE), `mdc`
switch the parts one by one for ablations.

MDC class centres: mean feature of the clean (unaugmented, final) images of earlier batches. Under
torchrun, rank r makes batches r, r+W, r+2W, ... of each round of W; after a round every rank receives
every batch (all_gather), rank 0 writes the file. Ranks in one round cannot see each other's images, so
the centres advance once per round: `centre_every` is rounded up to a multiple of W (recorded in the
file's config). A single-process run with the same `centre_every` gives the same file. Every random draw
of batch b comes from a generator seeded with (seed, b), so a batch does not depend on who makes it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from ...common.devices import resolve_device
from ...common.errors import DctqError, QuantizationError
from ...common.seeding import mix_seed
from ...jpeg.transforms import draw_crop_boxes
from ...models.checkpoint import load_checkpoint
from .. import distributed as dd
from ..frozen import frozen_eval
from .config import SynthBatchEnd, SynthConfig, SynthEvent, SynthStep
from .data import (
    KEYS,
    SyntheticData,
    load_resumable,
    merge_batches,
    save_synthetic,
    teacher_fingerprint,
)
from .images import SynthImages, draw_qualities
from .losses import (
    BnStatsHooks,
    CentreBank,
    FeatureHook,
    class_feature_sums,
    draw_sil_targets,
    mdc_loss,
    sil_loss,
)

__all__ = ["round_size", "run_config", "synthesize", "synthesize_checkpoint"]

logger = logging.getLogger(__name__)

_SYNTH_STREAM = 12_345
"""Last part of mix_seed(seed, batch, _SYNTH_STREAM), the seed of batch `batch`'s generator: every draw
of a batch depends on (seed, batch) only, apart from the (seed, epoch) streams of training and tuning."""

# ------------------------------------------------------------------------------------ helpers


def round_size(centre_every: int, world_size: int) -> int:
    """centre_every rounded up to a multiple of the number of processes."""
    return world_size * math.ceil(centre_every / world_size)


def run_config(config: SynthConfig, world_size: int) -> SynthConfig:
    """`config` as a run on `world_size` processes makes it (and records it in the file): centre_every
    rounded up to a multiple of world_size."""
    rounded = round_size(config.centre_every, world_size)
    return config if rounded == config.centre_every else dataclasses.replace(config, centre_every=rounded)


def _model_facts(teacher: nn.Module) -> tuple[str, int, int]:
    kind = getattr(teacher, "input_kind", None)
    size = getattr(teacher, "input_size", None)
    classes = getattr(teacher, "num_classes", None)
    if kind not in KEYS or not isinstance(size, int) or not isinstance(classes, int):
        raise QuantizationError(
            f"{type(teacher).__name__} lacks input_kind ('dct'/'rgb'), input_size or num_classes; build it "
            "with dctq.models.create_model or load_checkpoint"
        )
    if kind == "dct" and size % 16:
        raise QuantizationError(f"DCT model input_size {size} is not a multiple of 16 (one 4:2:0 MCU)")
    return kind, size, classes


@dataclass
class _Job:
    """What every batch of one run shares. progress: the caller's, on rank 0 only (else None)."""

    teacher: nn.Module
    config: SynthConfig
    kind: str
    size: int
    num_classes: int
    device: torch.device
    bn: BnStatsHooks
    features: FeatureHook | None
    bank: CentreBank
    progress: Callable[[SynthEvent], None] | None
    class_names: list[str]
    meta: dict[str, Any]


@dataclass
class _Made:
    """What a run holds so far: the finished batches' samples (loader-style dicts) and losses, the MDC
    centres, how many batches are done, and the newest SyntheticData (the resumed file until a round
    ends)."""

    batches: list[dict[str, Tensor]]
    losses: list[dict[str, float]]
    bank: CentreBank
    done: int = 0
    data: SyntheticData | None = None


def _make_batch(job: _Job, b: int) -> dict[str, Any]:
    """Optimise batch `b`; returns {"samples", "sums", "counts", "losses"} (CPU tensors, plain floats)."""
    cfg, device = job.config, job.device
    n = min(cfg.batch_size, cfg.num - b * cfg.batch_size)
    gen = torch.Generator().manual_seed(mix_seed(cfg.seed, b, _SYNTH_STREAM))
    labels = torch.randint(0, job.num_classes, (n,), generator=gen)
    quality, qt = draw_qualities(n, *cfg.qualities, gen)
    targets = draw_sil_targets(n, cfg.sil_eps, gen)
    images = SynthImages.random(
        job.kind, n, job.size, qt, gen, space=cfg.dct_space, model=job.teacher, device=device
    )
    labels_d, targets_d = labels.to(device), targets.to(device)
    optimizer = torch.optim.Adam(images.params, lr=cfg.lr)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=cfg.plateau_factor, patience=cfg.plateau_patience, min_lr=cfg.min_lr
    )
    dim = job.teacher.get_submodule(job.features.name).in_features if job.features else 1  # type: ignore[union-attr]
    centres, has_centre = job.bank.centres(dim)
    centres, has_centre = centres.to(device), has_centre.to(device)
    zero = torch.zeros((), device=device)
    parts = {"loss": 0.0, "bns": 0.0, "label": 0.0, "mdc": 0.0}
    for it in range(1, cfg.iterations + 1):
        crop = None
        if cfg.lor and float(torch.rand((), generator=gen)) < cfg.lor_prob:
            boxes = draw_crop_boxes(n, job.size, job.size, gen, scale=cfg.crop_scale, ratio=cfg.crop_ratio)
            crop = (boxes, torch.rand(n, generator=gen) < 0.5)
        optimizer.zero_grad(set_to_none=True)
        logits = job.teacher(*images.model_args(crop))
        bns = job.bn.loss()
        label = sil_loss(logits, labels_d, targets_d) if cfg.sil else F.cross_entropy(logits, labels_d)
        mdc = zero
        if job.features is not None:
            mdc = mdc_loss(job.features.take(), labels_d, centres, has_centre, cfg.mdc_lo, cfg.mdc_up)
        total = bns + label + mdc
        total.backward()
        optimizer.step()
        plateau.step(float(total.detach()))
        parts = {
            k: float(v.detach()) for k, v in (("loss", total), ("bns", bns), ("label", label), ("mdc", mdc))
        }
        if job.progress is not None and (it % cfg.log_every == 0 or it == cfg.iterations):
            lr = optimizer.param_groups[0]["lr"]
            job.progress(SynthStep(b, it, cfg.iterations, lr=lr, lor=crop is not None, **parts))
    result: dict[str, Any] = {"batch": b, "losses": {"batch": b, **parts}}
    with torch.no_grad():
        job.bn.enabled = False
        try:
            job.teacher(*images.model_args())
        finally:
            job.bn.enabled = True
        if job.features is not None:
            result["sums"], result["counts"] = class_feature_sums(
                job.features.take(), labels, job.num_classes
            )
        result["samples"] = images.stored(quality, labels)
    return result


def _gather(result: dict[str, Any] | None, env: dd.DistEnv) -> list[dict[str, Any]]:
    """Every process's batch result of this round, in batch order (None entries dropped)."""
    if not env.distributed:
        return [] if result is None else [result]
    gathered: list[Any] = [None] * env.world_size
    dist.all_gather_object(gathered, result)
    return [r for r in sorted((g for g in gathered if g is not None), key=lambda r: r["batch"])]


def _broadcast(obj: Any, env: dd.DistEnv) -> Any:
    if not env.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _start_or_resume(
    path: Path | None, resume: bool, config: SynthConfig, meta: dict[str, Any], env: dd.DistEnv
) -> _Made:
    """Rank 0 decides what to continue (load_resumable) and every rank receives it; so does an error, or
    the other ranks would wait forever in the first gather."""
    start: SyntheticData | DctqError | None = None
    if env.is_main:
        try:
            start = load_resumable(path, resume, config, meta["fingerprint"])
        except DctqError as exc:
            start = exc
    start = _broadcast(start, env)
    if isinstance(start, DctqError):
        raise start
    bank = CentreBank(meta["num_classes"], config.centre_every)
    if start is None:
        return _Made([], [], bank)
    if start.state.get("centres"):
        bank.load_state_dict(start.state["centres"])
    size = config.batch_size
    batches = [start.batch(slice(i * size, (i + 1) * size)) for i in range(start.done_batches)]
    return _Made(batches, list(start.batch_losses), bank, start.done_batches, start)


@contextlib.contextmanager
def _hooked(teacher: nn.Module, kind: str, mdc: bool) -> Iterator[tuple[BnStatsHooks, FeatureHook | None]]:
    """The teacher frozen in eval mode with the L_BNS hooks (the DCT stem's layers left out) and, for
    MDC, the feature hook on its head attached; all removed after."""
    with (
        frozen_eval(teacher),
        BnStatsHooks(teacher, ("stem.",) if kind == "dct" else ()) as bn,
        FeatureHook(teacher) if mdc else contextlib.nullcontext() as features,
    ):
        yield bn, features


def _round(job: _Job, made: _Made, first: int, env: dd.DistEnv) -> list[dict[str, Any]]:
    """Batches first .. first + W - 1: rank r makes batch first + r (when it exists), every rank receives
    them all (in batch order) and merges them into `made` (samples, losses, MDC centres). Returns the
    round's _make_batch results."""
    num_batches = job.config.num_batches
    mine = first + env.rank
    results = _gather(_make_batch(job, mine) if mine < num_batches else None, env)
    for r in results:
        made.batches.append(r["samples"])
        made.losses.append(r["losses"])
        if job.config.mdc:
            made.bank.add_batch(r["batch"], r["sums"], r["counts"])
    made.done = min(first + env.world_size, num_batches)
    return results


def _write(job: _Job, made: _Made, path: Path | None, env: dd.DistEnv) -> SyntheticData:
    """The set as it stands after a round; rank 0 saves it to `path` (atomically) when there is one."""
    data = SyntheticData(
        kind=job.kind,
        tensors=merge_batches(made.batches, job.kind),
        config=job.config.to_dict(),
        class_names=job.class_names,
        done_batches=made.done,
        num_batches=job.config.num_batches,
        teacher=job.meta,
        batch_losses=list(made.losses),
        state={"centres": made.bank.state_dict()} if job.config.mdc else {},
    )
    if env.is_main and path is not None:
        save_synthetic(path, data)
    return data


# ---------------------------------------------------------------------------------------- run


def synthesize(
    teacher: nn.Module,
    config: SynthConfig | None = None,
    out: Path | str | None = None,
    *,
    resume: bool = False,
    class_names: Sequence[str] | None = None,
    arch: str | None = None,
    progress: Callable[[SynthEvent], None] | None = None,
    env: dd.DistEnv | None = None,
) -> SyntheticData:
    """Make a synthetic calibration set from `teacher` (a dctq model: input_kind/input_size/num_classes).

    out: file written after every round of batches (atomically; see zeroshot/data.py), None keeps it in
        memory only.
    resume: continue `out` from its last finished batch (a missing file starts afresh); options other
        than device/log_every must match. class_names / arch: recorded in the file.
    progress: receives SynthStep / SynthBatchEnd events (rank 0 only). env: the process layout
        (default: from torchrun's environment); every rank returns the whole set.
    The teacher is moved to the run's device and used in eval mode; its parameters get no gradients.

    Returns the complete SyntheticData. Raises QuantizationError for a model that cannot be used
    (no BatchNorm2d, no Linear head with MDC, unknown input kind), DataError for `out` existing
    without resume, or a resume whose options or teacher differ.
    """
    config = config or SynthConfig()
    env = env or dd.detect_env()
    kind, size, num_classes = _model_facts(teacher)
    device = resolve_device(config.device, local_rank=env.local_rank)
    asked, config = config.centre_every, run_config(config, env.world_size)
    if config.centre_every != asked:
        logger.warning(
            "centre_every %d -> %d (a multiple of %d processes)", asked, config.centre_every, env.world_size
        )
    names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
    if len(names) != num_classes:
        raise QuantizationError(f"{len(names)} class names for a model with {num_classes} outputs")
    path = Path(out) if out is not None else None
    teacher.to(device)
    meta = {
        "arch": arch,
        "num_classes": num_classes,
        "input_size": size,
        "fingerprint": teacher_fingerprint(teacher),
    }
    report = progress if env.is_main else None
    with dd.process_group(device, env):
        made = _start_or_resume(path, resume, config, meta, env)
        with _hooked(teacher, kind, config.mdc) as (bn, features):
            job = _Job(
                teacher, config, kind, size, num_classes, device, bn, features, made.bank, report, names, meta
            )
            for first in range(made.done, config.num_batches, env.world_size):
                tick = time.perf_counter()
                results = _round(job, made, first, env)
                made.data = _write(job, made, path, env)
                if report is not None:
                    seconds = time.perf_counter() - tick
                    for r in results:
                        loss = r["losses"]
                        report(
                            SynthBatchEnd(
                                r["batch"], made.done, config.num_batches, loss["loss"], loss["bns"], seconds
                            )
                        )
    if made.data is None:  # unreachable: num >= 1 makes at least one batch
        raise QuantizationError("synthesis made no batch")
    logger.info("synthesised %d images in %d batches (%s)", len(made.data), config.num_batches, config.method)
    return made.data


def synthesize_checkpoint(
    checkpoint: Path | str,
    config: SynthConfig | None = None,
    out: Path | str | None = None,
    *,
    resume: bool = False,
    progress: Callable[[SynthEvent], None] | None = None,
) -> SyntheticData:
    """`synthesize` from a dctq checkpoint file (class names and architecture recorded in the output).

    Raises ModelError for an unreadable checkpoint, and what `synthesize` raises.
    """
    loaded = load_checkpoint(checkpoint)
    return synthesize(
        loaded.model,
        config,
        out,
        resume=resume,
        class_names=loaded.class_names or None,
        arch=loaded.arch,
        progress=progress,
    )
