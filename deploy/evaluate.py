"""Accuracy per JPEG quality: top-1 / top-5 of a model (or any predictor) on images re-compressed
at each quality (QSAM's protocol: the test set saved at IJG quality q, for each q).

The loop takes any `predict(batch) -> logits`: a Runner of any backend (deploy/backends: a PyTorch
model or checkpoint, an ONNX Runtime session, a TensorRT engine), so every artifact is evaluated by
the same code. Batches are the dicts of `jpeg.dataset.make_loader`: y/cbcr (DCT) or x (RGB), qt,
label, quality.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from ..common.errors import ConfigError, DctqError
from ..common.records import write_metrics
from ..jpeg.dataset import make_loader
from ..jpeg.recompress import QualityPolicy
from ..jpeg.splits import make_dataset, screen_split, split_data
from ..models.checkpoint import LoadedCheckpoint
from ..models.metrics import topk_correct
from .artifact import Artifact, load_artifact
from .backends.pytorch import TorchRunner
from .backends.registry import Runner, load_runner

logger = logging.getLogger(__name__)

Predictor = Callable[[dict[str, Tensor]], Tensor]
"""batch dict -> logits [N, classes] (any device, any float dtype)."""

DatasetFactory = Callable[[int | None], Dataset]
"""quality (None: files as stored) -> an evaluation dataset whose images are re-compressed at it."""


@dataclasses.dataclass(frozen=True)
class QualityRow:
    """Accuracy at one JPEG quality (None: the files as stored); top1/top5 in [0, 1]."""

    quality: int | None
    images: int
    top1: float
    top5: float
    loss: float


@dataclasses.dataclass(frozen=True)
class EvalReport:
    """Accuracy of one model over several qualities; `skipped`: files left out as unreadable
    (`bad_files="skip"`: path, the reader's message)."""

    model: str
    arch: str | None
    rows: tuple[QualityRow, ...]
    skipped: tuple[tuple[str, str], ...] = ()

    @property
    def mean_top1(self) -> float:
        """Mean of the rows' top-1 (each quality counts once, as QSAM's model selection does)."""
        return sum(r.top1 for r in self.rows) / len(self.rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "arch": self.arch,
            "mean_top1": self.mean_top1,
            "rows": [dataclasses.asdict(r) for r in self.rows],
            "skipped_files": [{"path": p, "error": e} for p, e in self.skipped],
        }


@dataclasses.dataclass(frozen=True)
class EvalProgress:
    """Batch `batch` of `batches` done at `quality`."""

    quality: int | None
    batch: int
    batches: int


Evaluable = Runner | nn.Module | LoadedCheckpoint | Path | str | Predictor
"""What `evaluate` takes: a Runner of any backend, or what becomes one (see `as_runner`)."""


def as_runner(
    model: Evaluable, device: str | torch.device = "auto", *, qabn_routing: str = "auto"
) -> Runner | Predictor:
    """A Runner for `model`: an nn.Module or LoadedCheckpoint -> TorchRunner (QABN routing decided
    there, `models.qabn.choose_routing`); an artifact path -> its default backend's runner (a checkpoint
    through TorchRunner with `qabn_routing`); a Runner, or any callable predict(batch) -> logits, as it is.

    Raises:
        ModelError / ExportError: an unreadable checkpoint or artifact, a bad routing name.
        DctqError: an unknown suffix, a missing file, a bad device, or a `model` of another type.
    """
    if isinstance(model, nn.Module | LoadedCheckpoint):
        return TorchRunner(model, device=device, qabn_routing=qabn_routing)
    if isinstance(model, str | Path):
        art = load_artifact(model)
        if art.kind == "checkpoint":
            return TorchRunner(art, device=device, qabn_routing=qabn_routing)
        return load_runner(art, device=str(device))
    if callable(model):
        return model
    raise DctqError(
        f"cannot evaluate a {type(model).__name__}: give a model, a checkpoint path or a predictor"
    )


def _describe(model: Evaluable, runner: Runner | Predictor) -> tuple[str, str | None]:
    """(the report's model description, arch) of what `evaluate` was given."""
    if isinstance(model, LoadedCheckpoint):
        return model.arch, model.arch
    if isinstance(model, nn.Module):
        return type(model).__name__, None
    if isinstance(model, str | Path):
        art = getattr(runner, "artifact", None)
        return str(model), art.meta.arch if art is not None else None
    return getattr(runner, "__name__", type(runner).__name__), None


def evaluate_loader(
    predict: Predictor,
    loader: DataLoader,
    *,
    quality: int | None = None,
    progress: Callable[[EvalProgress], None] | None = None,
) -> QualityRow:
    """Top-1 / top-5 / mean cross-entropy of `predict` over every batch of `loader`.

    Raises:
        DctqError: the loader is empty, or the predictor returns logits of the wrong shape.
    """
    total = len(loader)
    images, top1, top5, loss = 0, 0, 0, 0.0
    for i, batch in enumerate(loader, start=1):
        labels = batch["label"]
        logits = predict(batch)
        if logits.dim() != 2 or logits.shape[0] != labels.shape[0]:
            raise DctqError(
                f"the predictor returned logits of shape {tuple(logits.shape)} for a batch of {labels.shape[0]}; "
                "expected [N, classes]"
            )
        logits = logits.detach().float().cpu()
        c1, c5 = topk_correct(logits, labels)
        top1, top5 = top1 + int(c1), top5 + int(c5)
        loss += float(F.cross_entropy(logits, labels, reduction="sum"))
        images += labels.shape[0]
        if progress is not None:
            progress(EvalProgress(quality, i, total))
    if images == 0:
        raise DctqError("the evaluation set is empty; check --data and --split")
    return QualityRow(quality, images, top1 / images, top5 / images, loss / images)


def evaluate(
    model: Evaluable,
    dataset_factory: DatasetFactory,
    qualities: Sequence[int] | None,
    batch_size: int = 128,
    device: str | torch.device = "auto",
    *,
    num_workers: int = 0,
    qabn_routing: str = "auto",
    progress: Callable[[EvalProgress], None] | None = None,
) -> EvalReport:
    """Top-1 / top-5 of a model at each JPEG quality.

    Args:
        model: a Runner (any backend: `deploy.backends.registry.load_runner`), an nn.Module (DCT
            forward(y, cbcr, qt) or RGB forward(x, qt)), a dctq checkpoint or artifact (path or
            LoadedCheckpoint), or any Predictor `predict(batch) -> logits [N, classes]` (see `as_runner`).
        dataset_factory: quality -> evaluation dataset re-compressed at that quality (None: as stored),
            e.g. `lambda q: JpegFolder(root, input_size=32, train=False, qualities=QualityPolicy(test_quality=q))`.
        qualities: the qualities to test; None evaluates the files as stored (one row, quality None).
        batch_size, num_workers: of the evaluation loaders. device: for models and checkpoints.
        qabn_routing: "auto", "oracle" or "mixer", for QSAM models given as modules or checkpoints
            (a Runner has decided its own).

    Raises:
        ModelError: unreadable checkpoint, bad routing name. DataError / JpegError: bad data.
        DctqError: bad arguments.
    """
    runner = as_runner(model, device, qabn_routing=qabn_routing)
    name, arch = _describe(model, runner)
    rows = []
    for quality in list(qualities) if qualities else [None]:
        loader = make_loader(dataset_factory(quality), batch_size, shuffle=False, num_workers=num_workers)
        row = evaluate_loader(runner, loader, quality=quality, progress=progress)
        logger.info("quality %s: top-1 %.4f top-5 %.4f (%d images)", quality, row.top1, row.top5, row.images)
        rows.append(row)
    return EvalReport(name, arch, tuple(rows))


def evaluate_artifact(
    artifact: Artifact | Path | str,
    data: str | Path,
    *,
    val_fraction: float,
    split: str = "val",
    qualities: Sequence[int] | None = None,
    batch_size: int = 256,
    num_workers: int = 0,
    device: str = "auto",
    backend: str | None = None,
    qabn_routing: str = "auto",
    progress: Callable[[EvalProgress], None] | None = None,
    record: Path | str | None = None,
    trust_code: bool = False,
    bad_files: str = "stop",
) -> EvalReport:
    """`dctq evaluate`: top-1 / top-5 of any artifact on the `split` ("val", "train" or "all") of `data`
    ("cifar10" or an ImageFolder of JPEGs), at each of `qualities` (None: the files as stored).

    val_fraction: the share split off as validation images (jpeg.splits.split_data, fixed seed): the
    run's own to get its validation set back (calibration.train.config.saved_val_fraction reads it from
    a checkpoint). A checkpoint is evaluated through its model, so `qabn_routing` applies; any other
    artifact through `backend` (default: the artifact's natural one). record: also write the run record
    there, one row per quality (common/records.py; `dctq evaluate --out r.json` gives r.metrics.csv).
    trust_code: load a path of a kind that holds code (.ts, .pt2, .engine: artifact.CODE_KINDS).
    bad_files: "stop", "list" or "skip" (jpeg.splits.screen_split over the images of `split`; skipped
    files are named in the report).

    Raises:
        ConfigError: bad batch size or worker count, an artifact without a recorded architecture
            (no sidecar), or data whose class folders differ from the model's classes.
        DctqError / ModelError / ExportError: unreadable artifacts, unknown backends.
        DataError / JpegError: bad data. UnreadableFilesError: bad files with bad_files="list".
    """
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    if num_workers < 0:
        raise ConfigError(f"--workers must be >= 0, got {num_workers}")
    if not 0 <= val_fraction < 1:
        raise ConfigError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    art = artifact if isinstance(artifact, Artifact) else load_artifact(artifact, trust_code=trust_code)
    if art.meta.arch is None:
        raise ConfigError(
            f"{art.path}: no architecture recorded (missing JSON sidecar?); export it with `dctq export`"
        )
    screened = screen_split(split_data(data, val_fraction), bad_files, (split,))
    splits = screened.split
    samples = splits.samples(split)
    if art.class_names and list(art.class_names) != list(splits.class_names):
        raise ConfigError(
            f"{data} has classes {splits.class_names[:5]}... but {art.path} was trained on "
            f"{list(art.class_names)[:5]}...; evaluate on data with the same class folders"
        )
    meta = art.meta

    def factory(quality: int | None) -> Dataset:
        policy = QualityPolicy(test_quality=quality)
        return make_dataset(
            meta.input_kind, meta.input_size, splits.root, samples, train=False, policy=policy
        )

    # A checkpoint evaluates through its own model, so its QABN routing options apply.
    if art.kind == "checkpoint" and backend in (None, "torch"):
        target: Evaluable = art.checkpoint  # type: ignore[assignment]
    else:
        target = load_runner(art, backend, device=device)
    report = evaluate(
        target,
        factory,
        qualities,
        batch_size=batch_size,
        device=device,
        num_workers=num_workers,
        qabn_routing=qabn_routing,
        progress=progress,
    )
    report = dataclasses.replace(report, arch=report.arch or meta.arch, skipped=tuple(screened.skipped))
    if record is not None:
        write_metrics(record, report.rows)
    return report
