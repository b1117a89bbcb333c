"""Synthetic calibration sets: the tensors, the file they live in, batches for calibration and training,
and the checks that a set fits a run (one copy each, used by synthesize, distill and the workflow).

File (`torch.save` of a dict that `torch.load(weights_only=True)` reads), written atomically after
every finished batch so that a killed run resumes from the last one:

  format "dctq.synthetic", version 1, kind "dct" | "rgb",
  DCT: y [N, 64, Hb, Wb] int16, cbcr [N, 128, Hb/2, Wb/2] int16 | RGB: x [N, 3, H, W] float32 (normalised),
  qt [N, 3, 64] float32, quality [N] int64 (IJG quality of qt), label [N] int64,
  config (SynthConfig.to_dict()), done_batches, num_batches, class_names, teacher {arch, num_classes,
  fingerprint}, batch_losses [{batch, loss, bns, label, mdc}], state (what resuming needs: MDC centres).

N = done_batches * batch_size while the run is incomplete (the last batch may be smaller at the end).
Batches are dicts in the loaders' layout (jpeg/dataset.collate_samples), so
`calibration.ptq.model_args` feeds them to a model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ...common.errors import DataError, QuantizationError
from ...common.files import atomic_path
from ...common.torch_files import load_torch_file
from .config import SynthConfig

logger = logging.getLogger(__name__)

FORMAT = "dctq.synthetic"
VERSION = 1
KEYS = {"dct": ("y", "cbcr", "qt", "quality", "label"), "rgb": ("x", "qt", "quality", "label")}


@dataclasses.dataclass(frozen=True)
class SyntheticData:
    """A synthetic set (possibly still being made: `complete` False).

    tensors: the KEYS[kind] tensors, first axis N (see module docstring for shapes and dtypes).
    """

    kind: str
    tensors: dict[str, Tensor]
    config: dict[str, Any]
    class_names: list[str]
    done_batches: int
    num_batches: int
    teacher: dict[str, Any]
    batch_losses: list[dict[str, float]] = dataclasses.field(default_factory=list)
    state: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KEYS:
            raise DataError(f"synthetic data kind must be 'dct' or 'rgb', got {self.kind!r}")
        missing = [k for k in KEYS[self.kind] if k not in self.tensors]
        if missing:
            raise DataError(f"synthetic {self.kind} data lacks tensors {missing}")
        sizes = {k: int(self.tensors[k].shape[0]) for k in KEYS[self.kind]}
        if len(set(sizes.values())) > 1:
            raise DataError(f"synthetic tensors disagree on the number of samples: {sizes}")

    def __len__(self) -> int:
        return int(self.tensors["label"].shape[0])

    @property
    def complete(self) -> bool:
        return self.done_batches >= self.num_batches

    @property
    def num_classes(self) -> int:
        return int(self.teacher.get("num_classes") or len(self.class_names))

    def batch(self, index: Tensor | slice) -> dict[str, Tensor]:
        """The samples at `index` (a slice or a [n] long tensor) as a loader-style batch dict."""
        return {k: self.tensors[k][index] for k in KEYS[self.kind]}

    def summary(self, path: Path | str) -> dict[str, Any]:
        """The JSON form of a finished synthesis written to `path` (`dctq synthesize --json`): counts,
        images per class, the config and the per-batch losses (no tensors)."""
        counts = self.tensors["label"].bincount(minlength=self.num_classes).tolist()
        return {
            "out": str(path),
            "kind": self.kind,
            "images": len(self),
            "batches": self.num_batches,
            "per_class": dict(zip(self.class_names, counts, strict=True)),
            "config": self.config,
            "batch_losses": self.batch_losses,
        }

    def batches(self, batch_size: int, limit: int | None = None) -> Iterator[dict[str, Tensor]]:
        """Consecutive batches of `batch_size` (the last may be smaller), stopping after `limit` samples."""
        if batch_size < 1:
            raise DataError(f"batch_size must be >= 1, got {batch_size}")
        n = len(self) if limit is None else min(limit, len(self))
        for start in range(0, n, batch_size):
            yield self.batch(slice(start, min(start + batch_size, n)))


def teacher_fingerprint(model: nn.Module) -> str:
    """SHA-256 of the model's state dict (names, dtypes, shapes, values): which teacher made a file."""
    digest = hashlib.sha256()
    for name, value in model.state_dict().items():
        t = value.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def merge_batches(batches: list[dict[str, Tensor]], kind: str) -> dict[str, Tensor]:
    """Concatenate per-batch tensor dicts (in order) into one; an empty list gives empty tensors."""
    if not batches:
        return {}
    return {k: torch.cat([b[k] for b in batches]) for k in KEYS[kind]}


def save_synthetic(path: Path | str, data: SyntheticData) -> Path:
    """Write `data` to `path` atomically (see module docstring); returns the path."""
    path = Path(path)
    payload: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "kind": data.kind,
        **{k: data.tensors[k].contiguous() for k in KEYS[data.kind]},
        "config": data.config,
        "class_names": list(data.class_names),
        "done_batches": data.done_batches,
        "num_batches": data.num_batches,
        "teacher": data.teacher,
        "batch_losses": list(data.batch_losses),
        "state": data.state,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_synthetic(path: Path | str, *, allow_partial: bool = False) -> SyntheticData:
    """Read a synthetic set written by `save_synthetic` / `synthesize`.

    Raises DataError for a missing, unreadable or foreign file, and (unless allow_partial) for a file
    whose synthesis has not finished (resume it with `dctq synthesize ... --resume`).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"synthetic data file not found: {path}")
    payload = load_torch_file(path, "dctq synthetic data file", DataError, fmt=FORMAT)
    if payload.get("version") != VERSION:
        raise DataError(
            f"{path} has synthetic-data version {payload.get('version')!r}; this dctq reads {VERSION}"
        )
    kind = payload.get("kind")
    if kind not in KEYS:
        raise DataError(f"{path} is damaged: kind {kind!r} is neither 'dct' nor 'rgb'")
    try:
        data = SyntheticData(
            kind=kind,
            tensors={k: payload[k] for k in KEYS[kind]},
            config=dict(payload["config"]),
            class_names=list(payload["class_names"]),
            done_batches=int(payload["done_batches"]),
            num_batches=int(payload["num_batches"]),
            teacher=dict(payload["teacher"]),
            batch_losses=list(payload.get("batch_losses", [])),
            state=dict(payload.get("state") or {}),
        )
    except KeyError as exc:
        raise DataError(f"{path} is damaged: field {exc} is missing") from None
    if not allow_partial and not data.complete:
        raise DataError(
            f"{path} holds {data.done_batches} of {data.num_batches} batches: its synthesis did not finish; "
            "continue it with `dctq synthesize CKPT --out FILE --resume` (same options)"
        )
    return data


# ------------------------------------------------------------------------ does a set fit this run


def check_teacher(
    data: SyntheticData, teacher: nn.Module | str, path: Path | str, *, context: str = ""
) -> None:
    """Raise DataError unless the synthetic set `data` (read from `path`) was synthesized from `teacher`
    (the model, or its teacher_fingerprint). `context` starts the message (the flag being acted on).
    """
    fingerprint = teacher if isinstance(teacher, str) else teacher_fingerprint(teacher)
    if data.teacher.get("fingerprint") != fingerprint:
        raise DataError(
            f"{context}{path} was synthesized from another model (weights differ); use that checkpoint"
        )


def check_continuable(
    data: SyntheticData,
    config: SynthConfig,
    teacher: nn.Module | str,
    path: Path | str,
    *,
    context: str,
    fix: str,
) -> None:
    """Raise DataError unless a run with `config` (centre_every as the run makes it) from `teacher` may
    continue or reuse the synthetic file `data` read from `path`: the same options up to
    SynthConfig.RESUMABLE (Config.changes) and the same teacher weights (check_teacher).

    context: starts the message (the flag being acted on, e.g. "--resume: "); fix: ends it (what to do).
    """
    # Through from_dict, so files written before SynthConfig gained its "type" key compare the same.
    changed = SynthConfig.from_dict(data.config).changes(config)
    if changed:
        details = ", ".join(f"{k}: file {saved!r} vs now {now!r}" for k, (saved, now) in changed.items())
        raise DataError(f"{context}{path} was made with other options ({details}); {fix}")
    check_teacher(data, teacher, path, context=context)


def load_resumable(
    path: Path | None, resume: bool, config: SynthConfig, teacher: nn.Module | str
) -> SyntheticData | None:
    """The partial (or finished) synthetic file `path` that a run with `config`
    from `teacher` (the model or its fingerprint) continues, None to start afresh (no path, or none yet).

    Raises DataError when the file exists without `resume`, and what load_synthetic and
    check_continuable raise.
    """
    if path is None or not path.exists():
        if resume and path is not None:
            logger.info("--resume: %s does not exist yet; starting afresh", path)
        return None
    if not resume:
        raise DataError(f"{path} already exists; pass --resume to continue it, or choose another --out")
    data = load_synthetic(path, allow_partial=True)
    check_continuable(
        data,
        config,
        teacher,
        path,
        context="--resume: ",
        fix="use the same options (and number of processes, which sets centre_every) or another --out",
    )
    logger.info("resuming %s after batch %d of %d", path, data.done_batches, data.num_batches)
    return data


def check_fits(data: SyntheticData, model: nn.Module) -> None:
    """Raise QuantizationError unless `data` can feed `model`: the same input kind ("dct"/"rgb") and
    class count (when the model declares them), and at least one sample."""
    kind = getattr(model, "input_kind", None)
    if kind is not None and kind != data.kind:
        raise QuantizationError(
            f"the synthetic set holds {data.kind} samples but the model reads {kind} input"
        )
    classes = getattr(model, "num_classes", None)
    if classes is not None and classes != data.num_classes:
        raise QuantizationError(
            f"the synthetic set was made for {data.num_classes} classes, the model has {classes}; "
            "synthesize from this model"
        )
    if len(data) == 0:
        raise QuantizationError("the synthetic set is empty")
