"""Classify JPEG files with any artifact on any backend: read, fit to the model's grid, batch, run.

Every file is fitted by the model's input policy (jpeg/input_policy.py, recorded in its checkpoint and
sidecar; the legacy crop/pad for models trained before policies were recorded): DCT models get the file's
quantized coefficients resized in the DCT domain (1/2, 1/4, 1/8) or by re-encoding with the file's own
tables, then the training data's preprocessing (jpeg/dataset.preprocess_dct: zero chroma for grayscale
files; centre crop/pad to the block grid on MCU boundaries); RGB models get Pillow's decode, the shorter
side resized, the centre crop and the policy's mean/std. A file cropped or padded against the policy's
view carries a note (Prediction.note), which is also logged as a warning.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..common.errors import ConfigError, DctqError
from ..jpeg.dataset import preprocess_dct
from ..jpeg.input_policy import Fit, InputPolicy, fit_dct, fit_rgb, legacy_policy, policy_from
from ..jpeg.reader import read_jpeg_file
from ..jpeg.rgb import decode_rgb, preprocess_rgb
from .artifact import Artifact, ArtifactMeta, load_artifact
from .backends.registry import Runner, load_runner

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Prediction:
    """Top-k classes of one image: (class name, class index, softmax probability), best first."""

    path: str
    top: tuple[tuple[str, int, float], ...]
    note: str | None = None

    @property
    def label(self) -> str:
        return self.top[0][0]

    @property
    def index(self) -> int:
        return self.top[0][1]

    @property
    def probability(self) -> float:
        return self.top[0][2]

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "label": self.label,
            "probability": self.probability,
            "top": [{"label": n, "index": i, "probability": p} for n, i, p in self.top],
            "note": self.note,
        }


def read_dct_input(
    path: Path | str | bytes, input_size: int, policy: InputPolicy | None = None
) -> dict[str, np.ndarray]:
    """One file (or JPEG bytes) as model inputs: y [64, S/8, S/8] int16, cbcr [128, S/16, S/16] int16,
    qt [3, 64] float32, fitted by `policy` (default: the legacy crop/pad; jpeg.input_policy) and cropped to
    the block grid as the evaluation data (jpeg.dataset.preprocess_dct). A policy without a resize keeps
    only the blocks of the centre crop while reading, so a large photograph costs the crop, not the image.

    Raises JpegError (from the reader) naming the file: unreadable, or above the pixel limit
    (jpeg.limits: $DCTQ_MAX_PIXELS, `dctq --max-pixels`).
    """
    inputs, _ = fit_input(path, policy or legacy_policy("dct", input_size))
    return inputs


def read_rgb_input(
    path: Path | str | bytes, input_size: int, policy: InputPolicy | None = None
) -> dict[str, np.ndarray]:
    """One file (or JPEG bytes) as RGB model inputs: x [3, S, S] float32 (resized, centre-cropped and
    normalised by `policy`; default the legacy crop/pad with CIFAR-10 statistics), qt [3, 64] float32.

    Raises JpegError / NotAJpegError / CorruptJpegError naming the file.
    """
    inputs, _ = fit_input(path, policy or legacy_policy("rgb", input_size))
    return inputs


def fit_input(path: Path | str | bytes, policy: InputPolicy) -> tuple[dict[str, np.ndarray], Fit]:
    """(model inputs, what was done to the file) for one file or JPEG bytes under `policy`."""
    name = "<bytes>" if isinstance(path, bytes) else str(path)
    if policy.kind == "dct":
        coefs, fit = fit_dct(path if isinstance(path, bytes) else Path(path), policy, source=name)
        return preprocess_dct(coefs, policy.size), fit
    data = path if isinstance(path, bytes) else read_jpeg_file(path)
    rgb, qt = decode_rgb(data, name)
    rgb, fit = fit_rgb(rgb, policy, source=name)
    return {"x": preprocess_rgb(rgb, policy.size, policy.mean, policy.std), "qt": qt}, fit


def artifact_policy(meta: ArtifactMeta) -> InputPolicy:
    """The input policy an artifact records (its sidecar's or checkpoint's extra), else the legacy one."""
    return policy_from(meta.extra, meta.input_kind, meta.input_size)


def read_input(path: Path | str | bytes, meta: ArtifactMeta) -> dict[str, np.ndarray]:
    """One file (or JPEG bytes) as the inputs of the model `meta` describes, by its input policy; a file
    cropped or padded against the policy's view is logged as a warning."""
    inputs, fit = fit_input(path, artifact_policy(meta))
    if fit.note:
        logger.warning("%s", fit.note)
    return inputs


def stack_inputs(samples: Sequence[dict[str, np.ndarray]], batch: int | None = None) -> dict[str, np.ndarray]:
    """Stack per-file inputs into a batch; with `batch` (a fixed-batch graph) repeat the last sample to fill it."""
    samples = list(samples)
    if batch is not None and len(samples) < batch:
        samples += [samples[-1]] * (batch - len(samples))
    return {k: np.stack([s[k] for s in samples]) for k in samples[0]}


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def predict(
    artifact: Artifact | Path | str,
    images: Sequence[Path | str],
    *,
    backend: str | None = None,
    top_k: int = 5,
    batch_size: int = 32,
    device: str = "auto",
    runner: Runner | None = None,
    trust_code: bool = False,
) -> list[Prediction]:
    """Top-k predictions for each JPEG in `images`, in order.

    Args:
        artifact: a loaded Artifact or a path (.pt/.onnx/.ts/.pt2/.engine).
        backend: "ort", "torch", "tensorrt"...; default by artifact kind. runner: an already loaded one.
        trust_code: load a path of a kind that holds code (.ts, .pt2, .engine: artifact.CODE_KINDS).
        top_k: classes per image (at most the number of classes). batch_size: images per run.

    Raises:
        JpegError: a file that cannot be read (names it). DctqError: bad arguments or backend problems.
    """
    if top_k < 1:
        raise ConfigError(f"--top-k must be >= 1, got {top_k}")
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    if not images:
        raise DctqError("no images to predict")
    art = artifact if isinstance(artifact, Artifact) else load_artifact(artifact, trust_code=trust_code)
    run = runner or load_runner(art, backend, device=device)
    fixed = art.meta.fixed_batch
    size = fixed or batch_size
    names = art.class_names
    out: list[Prediction] = []
    policy = artifact_policy(art.meta)
    for chunk in _chunks(list(images), size):
        fitted = [fit_input(p, policy) for p in chunk]  # notes travel in Prediction.note
        batch = stack_inputs([inputs for inputs, _ in fitted], fixed)
        logits = run.predict(batch)[: len(chunk)].float().cpu()
        probs = torch.softmax(logits, dim=1)
        k = min(top_k, probs.shape[1])
        values, indices = probs.topk(k, dim=1)
        for path, vals, idxs, (_, fit) in zip(chunk, values.tolist(), indices.tolist(), fitted, strict=True):
            top = tuple(
                (names[i] if i < len(names) else str(i), int(i), float(v))
                for v, i in zip(vals, idxs, strict=True)
            )
            out.append(Prediction(str(path), top, fit.note))
    return out


def artifact_predictor(
    path: Path | str,
    backend: str | None = None,
    *,
    device: str = "auto",
    trust_code: bool = False,
    **options: Any,
) -> tuple[Runner, Artifact]:
    """(predictor, artifact) for `deploy.evaluate.evaluate`: any artifact, evaluated by the same loop.

    runner, art = artifact_predictor("model.onnx")
    report = evaluate(runner, factory, qualities)    # factory builds the dataset for art.meta
    """
    art = load_artifact(path, trust_code=trust_code)
    return load_runner(art, backend, device=device, **options), art
