"""Classify JPEG files with any artifact on any backend: read, fit to the model's grid, batch, run.

DCT models get the training data's preprocessing of the file's quantized coefficients
(jpeg/dataset.preprocess_dct: zero chroma for grayscale files, what an encoder writes for a colourless
image; centre crop/pad to the model's block grid on MCU boundaries; the file's own quant tables). RGB models get the training data's preprocessing
(jpeg/rgb.py: Pillow decode, CIFAR-10 mean/std, centre crop or mean-colour padding to the input size).
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
from ..jpeg.geometry import block_grid
from ..jpeg.reader import read_jpeg, read_jpeg_file
from ..jpeg.rgb import decode_rgb, preprocess_rgb
from .artifact import Artifact, ArtifactMeta, load_artifact
from .backends.registry import Runner, load_runner

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Prediction:
    """Top-k classes of one image: (class name, class index, softmax probability), best first."""

    path: str
    top: tuple[tuple[str, int, float], ...]

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
        }


def read_dct_input(path: Path | str, input_size: int) -> dict[str, np.ndarray]:
    """One file as model inputs: y [64, S/8, S/8] int16, cbcr [128, S/16, S/16] int16, qt [3, 64] float32
    (jpeg.dataset.preprocess_dct, as the evaluation data). Only the blocks of the centre crop are kept
    while reading, so a large photograph costs the crop, not the image, in output arrays.

    Raises JpegError (from read_jpeg) naming the file: unreadable, or above the pixel limit
    (jpeg.limits: $DCTQ_MAX_PIXELS, `dctq --max-pixels`).
    """
    return preprocess_dct(read_jpeg(path, fit_grid=block_grid((input_size, input_size))), input_size)


def read_rgb_input(path: Path | str, input_size: int) -> dict[str, np.ndarray]:
    """One file as RGB model inputs: x [3, S, S] float32 (jpeg.rgb.preprocess_rgb, as the training data),
    qt [3, 64] float32.

    Raises JpegError / NotAJpegError / CorruptJpegError naming the file.
    """
    rgb, qt = decode_rgb(read_jpeg_file(path), path)
    return {"x": preprocess_rgb(rgb, input_size), "qt": qt}


def read_input(path: Path | str, meta: ArtifactMeta) -> dict[str, np.ndarray]:
    """One file as the inputs of the model `meta` describes (DCT or RGB)."""
    if meta.input_kind == "dct":
        return read_dct_input(path, meta.input_size)
    return read_rgb_input(path, meta.input_size)


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
    for chunk in _chunks(list(images), size):
        batch = stack_inputs([read_input(p, art.meta) for p in chunk], fixed)
        logits = run.predict(batch)[: len(chunk)].float().cpu()
        probs = torch.softmax(logits, dim=1)
        k = min(top_k, probs.shape[1])
        values, indices = probs.topk(k, dim=1)
        for path, vals, idxs in zip(chunk, values.tolist(), indices.tolist(), strict=True):
            top = tuple(
                (names[i] if i < len(names) else str(i), int(i), float(v))
                for v, i in zip(vals, idxs, strict=True)
            )
            out.append(Prediction(str(path), top))
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
