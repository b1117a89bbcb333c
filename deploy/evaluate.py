"""Accuracy per JPEG quality: top-1 / top-5 of a model (or any predictor) on images re-compressed
at each quality (QSAM's protocol: the test set saved at IJG quality q, for each q).

The loop takes any `predict(batch) -> logits`, so a PyTorch model, a checkpoint, and later an
ONNX Runtime session or a TensorRT engine are evaluated by the same code. Batches are the dicts
of `jpeg.dataset.make_loader`: y/cbcr (DCT) or x (RGB), qt, label, quality.
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

from ..common.devices import resolve_device
from ..common.errors import DctqError
from ..jpeg.batch import model_inputs
from ..jpeg.dataset import make_loader
from ..models.checkpoint import LoadedCheckpoint, load_checkpoint
from ..models.metrics import topk_correct
from ..models.qabn import is_qabn, qabn_routing
from ..models.qabn_routing import oracle_branch_index

logger = logging.getLogger(__name__)

Predictor = Callable[[dict[str, Tensor]], Tensor]
"""batch dict -> logits [N, classes] (any device, any float dtype)."""

DatasetFactory = Callable[[int | None], Dataset]
"""quality (None: files as stored) -> an evaluation dataset whose images are re-compressed at it."""

QABN_ROUTINGS = ("auto", "oracle", "mixer")


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
    """Accuracy of one model over several qualities."""

    model: str
    arch: str | None
    rows: tuple[QualityRow, ...]

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
        }


@dataclasses.dataclass(frozen=True)
class EvalProgress:
    """Batch `batch` of `batches` done at `quality`."""

    quality: int | None
    batch: int
    batches: int


class TorchPredictor:
    """A PyTorch model as a Predictor: moves the batch to `device`, runs the model in eval mode.

    qabn_routing (QSAM models only): "oracle" sends each image to the BN branch of the nearest base
    quality (how a model is used after QSAM's base stage, before its mixer is trained), "mixer"
    mixes the branches with the model's quant-table MLP (after the meta stage).
    """

    def __init__(self, model: nn.Module, device: torch.device, *, qabn_routing: str = "mixer") -> None:
        if qabn_routing not in ("oracle", "mixer"):
            raise DctqError(f"qabn_routing must be 'oracle' or 'mixer', got {qabn_routing!r}")
        self.model = model.to(device).eval()
        self.device = device
        self.oracle = qabn_routing == "oracle" and is_qabn(model)

    @torch.no_grad()
    def __call__(self, batch: dict[str, Tensor]) -> Tensor:
        inputs = model_inputs(batch, self.device)
        if self.oracle:
            with qabn_routing(self.model, oracle_branch_index(inputs[-1])):
                return self.model(*inputs)
        return self.model(*inputs)


def as_predictor(
    model_or_checkpoint: nn.Module | Path | str | LoadedCheckpoint | Predictor,
    device: str | torch.device = "auto",
    *,
    qabn_routing: str = "auto",
) -> tuple[Predictor, str, str | None]:
    """(predict, description, arch) for a model, a checkpoint (path or loaded), or a Predictor as it is.

    qabn_routing "auto": oracle routing for checkpoints saved after QSAM's base stage
    (extra["qsam"]["stage"] == "base") and for in-memory QABN models whose `qsam_stage` is not
    "meta"; the mixer otherwise.

    Raises:
        ModelError: unreadable checkpoint. DctqError: bad device or routing name.
    """
    if qabn_routing not in QABN_ROUTINGS:
        raise DctqError(f"qabn_routing must be one of {QABN_ROUTINGS}, got {qabn_routing!r}")
    if isinstance(model_or_checkpoint, str | Path | LoadedCheckpoint):
        loaded = model_or_checkpoint
        if not isinstance(loaded, LoadedCheckpoint):
            loaded = load_checkpoint(loaded)
        stage = (loaded.extra.get("qsam") or {}).get("stage")
        routing = ("oracle" if stage == "base" else "mixer") if qabn_routing == "auto" else qabn_routing
        predict = TorchPredictor(loaded.model, resolve_device(device), qabn_routing=routing)
        name = loaded.arch if isinstance(model_or_checkpoint, LoadedCheckpoint) else str(model_or_checkpoint)
        return predict, name, loaded.arch
    if isinstance(model_or_checkpoint, nn.Module):
        mixer = getattr(model_or_checkpoint, "qabn_mixer", None)
        stage = getattr(mixer, "stage", "base")
        routing = ("mixer" if stage == "meta" else "oracle") if qabn_routing == "auto" else qabn_routing
        predict = TorchPredictor(model_or_checkpoint, resolve_device(device), qabn_routing=routing)
        return predict, type(model_or_checkpoint).__name__, None
    if callable(model_or_checkpoint):
        return (
            model_or_checkpoint,
            getattr(model_or_checkpoint, "__name__", type(model_or_checkpoint).__name__),
            None,
        )
    raise DctqError(
        f"cannot evaluate a {type(model_or_checkpoint).__name__}: give a model, a checkpoint path or a predictor"
    )


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
    model_or_checkpoint: nn.Module | Path | str | LoadedCheckpoint | Predictor,
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
        model_or_checkpoint: an nn.Module (DCT forward(y, cbcr, qt) or RGB forward(x, qt)), a dctq
            checkpoint (path or LoadedCheckpoint), or any Predictor `predict(batch) -> logits [N, classes]`.
        dataset_factory: quality -> evaluation dataset re-compressed at that quality (None: as stored),
            e.g. `lambda q: JpegFolder(root, input_size=32, train=False, qualities=QualityPolicy(test_quality=q))`.
        qualities: the qualities to test; None evaluates the files as stored (one row, quality None).
        batch_size, num_workers: of the evaluation loaders. device: for models and checkpoints.
        qabn_routing: see `as_predictor`.

    Raises:
        ModelError: unreadable checkpoint. DataError / JpegError: bad data. DctqError: bad arguments.
    """
    predict, name, arch = as_predictor(model_or_checkpoint, device, qabn_routing=qabn_routing)
    rows = []
    for quality in list(qualities) if qualities else [None]:
        loader = make_loader(dataset_factory(quality), batch_size, shuffle=False, num_workers=num_workers)
        row = evaluate_loader(predict, loader, quality=quality, progress=progress)
        logger.info("quality %s: top-1 %.4f top-5 %.4f (%d images)", quality, row.top1, row.top5, row.images)
        rows.append(row)
    return EvalReport(name, arch, tuple(rows))
