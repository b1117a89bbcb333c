"""Zero-shot calibration data: IntraQ synthesis (Zhong et al., CVPR 2022) from a trained FP model alone.

`synthesize(teacher, SynthConfig(), out)` makes `num` images in batches. Per batch (METHODS.md section 3):
labels uniform, IJG qualities uniform in `qualities` (DCT models see the quantized coefficients a JPEG of
that quality would hold), images N(0, 1) in the model's normalised input space (normalised RGB for RGB
models; for DCT models the stem-normalised coefficients by default, see synth_params for why and for the
pixel alternative `dct_space="pixels"`), optimised with Adam(lr 0.5) and
ReduceLROnPlateau(patience 50, factor 0.1, min_lr 1e-4) on the total loss for `iterations` steps of

    L = L_BNS + L_SIL + L_MDC          (method "intraq"; synth_losses)

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
from torch import nn

from ...common.devices import resolve_device
from ...common.errors import DataError, DctqError, QuantizationError
from ...jpeg.transforms import draw_crop_boxes
from .. import distributed as dd
from .config import RESUMABLE_CHANGES, SynthBatchEnd, SynthConfig, SynthEvent, SynthStep
from .data import (
    KEYS,
    SyntheticData,
    load_synthetic,
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

__all__ = [
    "SynthBatchEnd",
    "SynthConfig",
    "SynthEvent",
    "SynthStep",
    "SyntheticData",
    "batch_seed",
    "frozen_eval",
    "round_size",
    "synthesize",
    "synthesize_checkpoint",
]

logger = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------ helpers


def batch_seed(seed: int, batch: int) -> int:
    """Seed of batch `batch`'s generator: every draw of a batch depends on (seed, batch) only."""
    return (seed * 1_000_003 + batch * 7_919 + 12_345) % (2**62)


def round_size(centre_every: int, world_size: int) -> int:
    """centre_every rounded up to a multiple of the number of processes."""
    return world_size * math.ceil(centre_every / world_size)


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


@contextlib.contextmanager
def frozen_eval(model: nn.Module) -> Iterator[None]:
    """Eval mode and no parameter gradients for the duration (restored after)."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    training = model.training
    for p, _ in flags:
        p.requires_grad_(False)
    model.eval()
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(training)


@dataclass
class _Job:
    """What every batch of one run shares."""

    teacher: nn.Module
    config: SynthConfig
    kind: str
    size: int
    num_classes: int
    device: torch.device
    bn: BnStatsHooks
    features: FeatureHook | None
    bank: CentreBank
    on_step: Callable[[SynthStep], None] | None


def _make_batch(job: _Job, b: int) -> dict[str, Any]:
    """Optimise batch `b`; returns {"samples", "sums", "counts", "losses"} (CPU tensors, plain floats)."""
    cfg, device = job.config, job.device
    n = min(cfg.batch_size, cfg.num - b * cfg.batch_size)
    gen = torch.Generator().manual_seed(batch_seed(cfg.seed, b))
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
        if job.on_step is not None and (it % cfg.log_every == 0 or it == cfg.iterations):
            lr = optimizer.param_groups[0]["lr"]
            job.on_step(SynthStep(b, it, cfg.iterations, lr=lr, lor=crop is not None, **parts))
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


def _resume_from(
    path: Path | None, resume: bool, config: dict[str, Any], teacher: dict[str, Any]
) -> SyntheticData | None:
    """The partial data of an earlier run to continue, None to start afresh (rank 0 only)."""
    if path is None or not path.exists():
        if resume and path is not None:
            logger.info("--resume: %s does not exist yet; starting afresh", path)
        return None
    if not resume:
        raise DataError(f"{path} already exists; pass --resume to continue it, or choose another --out")
    data = load_synthetic(path, allow_partial=True)
    changed = sorted(
        k
        for k in set(config) | set(data.config)
        if k not in RESUMABLE_CHANGES and config.get(k) != data.config.get(k)
    )
    if changed:
        details = ", ".join(f"{k}: file {data.config.get(k)!r} vs now {config.get(k)!r}" for k in changed)
        raise DataError(
            f"--resume: {path} was made with other options ({details}); use the same options "
            "(and number of processes, which sets centre_every) or another --out"
        )
    if data.teacher.get("fingerprint") != teacher["fingerprint"]:
        raise DataError(f"--resume: {path} was made from another model (weights differ); use that checkpoint")
    logger.info("resuming %s after batch %d of %d", path, data.done_batches, data.num_batches)
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

    out: file written after every batch (atomically; see synth_data), None keeps it in memory only.
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
    rounds = round_size(config.centre_every, env.world_size)
    if rounds != config.centre_every:
        logger.warning(
            "centre_every %d -> %d (a multiple of %d processes)", config.centre_every, rounds, env.world_size
        )
        config = dataclasses.replace(config, centre_every=rounds)
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
    num_batches = config.num_batches
    with dd.process_group(device, env):
        start: SyntheticData | DctqError | None = None
        if env.is_main:
            try:
                start = _resume_from(path, resume, config.to_dict(), meta)
            except DctqError as exc:  # every rank must learn of it, or the others wait forever
                start = exc
        start = _broadcast(start, env)
        if isinstance(start, DctqError):
            raise start
        batches = (
            [
                start.batch(slice(i * config.batch_size, (i + 1) * config.batch_size))
                for i in range(start.done_batches)
            ]
            if start
            else []
        )
        losses = list(start.batch_losses) if start else []
        done = start.done_batches if start else 0
        data = start
        bank = CentreBank(num_classes, config.centre_every)
        if start and start.state.get("centres"):
            bank.load_state_dict(start.state["centres"])
        on_step = progress if (progress is not None and env.is_main) else None
        with (
            frozen_eval(teacher),
            BnStatsHooks(teacher, ("stem.",) if kind == "dct" else ()) as bn,
            FeatureHook(teacher) if config.mdc else contextlib.nullcontext() as features,
        ):
            job = _Job(teacher, config, kind, size, num_classes, device, bn, features, bank, on_step)  # type: ignore[arg-type]
            for first in range(done, num_batches, env.world_size):
                tick = time.perf_counter()
                mine = first + env.rank
                results = _gather(_make_batch(job, mine) if mine < num_batches else None, env)
                for r in results:
                    batches.append(r["samples"])
                    losses.append(r["losses"])
                    if config.mdc:
                        bank.add_batch(r["batch"], r["sums"], r["counts"])
                done = min(first + env.world_size, num_batches)
                data = SyntheticData(
                    kind=kind,
                    tensors=merge_batches(batches, kind),
                    config=config.to_dict(),
                    class_names=names,
                    done_batches=done,
                    num_batches=num_batches,
                    teacher=meta,
                    batch_losses=losses,
                    state={"centres": bank.state_dict()} if config.mdc else {},
                )
                if env.is_main and path is not None:
                    save_synthetic(path, data)
                if on_step is not None:
                    seconds = time.perf_counter() - tick
                    for r in results:
                        loss = r["losses"]
                        progress(
                            SynthBatchEnd(r["batch"], done, num_batches, loss["loss"], loss["bns"], seconds)
                        )  # type: ignore[misc]
    if data is None:  # unreachable: num >= 1 makes at least one batch
        raise QuantizationError("synthesis made no batch")
    logger.info("synthesised %d images in %d batches (%s)", len(data), num_batches, config.method)
    return data


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
    from ...models.checkpoint import load_checkpoint

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
