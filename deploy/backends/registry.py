"""Runtimes by name: a `Backend` loads an `Artifact` into a `Runner` that maps a batch to logits.

    runner = get_backend("ort").load(load_artifact("model.onnx"))
    logits = runner.predict({"y": y, "cbcr": cbcr, "qt": qt})   # torch.Tensor [N, classes]

A Runner is also a `deploy.evaluate.Predictor` (calling it is `predict`), so `evaluate(runner, ...)`
scores any artifact with the same loop as a PyTorch model. Built in: "ort" (ONNX Runtime, CPU) and
"torch" (checkpoints, TorchScript, torch.export programs; CPU or CUDA). Other backends (TensorRT)
call `register_backend` from their own module; names listed in `_LAZY` are imported on first use,
so optional runtimes are only imported when asked for and a missing one raises BackendUnavailable
with its install command.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from ...common.errors import BackendUnavailable, DctqError
from ..artifact import Artifact, load_artifact

logger = logging.getLogger(__name__)


@runtime_checkable
class Runner(Protocol):
    """A loaded artifact ready to run. predict(batch) -> logits [N, classes] float32 torch.Tensor.

    batch: a dict with y [N, 64, Hb, Wb], cbcr [N, 128, Hb/2, Wb/2], qt [N, 3, 64] (DCT) or x [N, 3, H, W]
    [, qt] (RGB): int16/float tensors or numpy arrays; other keys (label, quality) are ignored.
    """

    backend: str
    device: str

    def predict(self, batch: Mapping[str, Any]) -> torch.Tensor: ...

    def __call__(self, batch: Mapping[str, Any]) -> torch.Tensor: ...

    def synchronize(self) -> None:
        """Wait for queued device work (CUDA); a no-op on CPU. Timing code calls it."""
        ...


@runtime_checkable
class Backend(Protocol):
    """A runtime: `name`, the artifact kinds it `accepts`, and `load(artifact, device=..., **options)`."""

    name: str
    accepts: tuple[str, ...]

    def load(self, artifact: Artifact, *, device: str = "auto", **options: Any) -> Runner: ...


_BACKENDS: dict[str, Backend] = {}
_LAZY = {
    "ort": "dctq.deploy.backends.ort",
    "torch": "dctq.deploy.backends.pytorch",
    "tensorrt": "dctq.deploy.backends.tensorrt.runner",
}
_INSTALL = {
    "ort": "pip install onnxruntime (or pip install 'dctq[onnx]')",
    "torch": "pip install torch",
    "tensorrt": "pip install 'dctq[tensorrt]' (TensorRT >= 11, NVIDIA GPU)",
}
DEFAULT_FOR_KIND = {
    "onnx": "ort",
    "checkpoint": "torch",
    "torchscript": "torch",
    "program": "torch",
    "engine": "tensorrt",
}


def register_backend(backend: Backend, *, replace: bool = False) -> Backend:
    """Add `backend` under `backend.name`. Raises DctqError if the name is taken by another object."""
    old = _BACKENDS.get(backend.name)
    if old is not None and old is not backend and not replace and type(old) is not type(backend):
        raise DctqError(f"backend {backend.name!r} is already registered by {type(old).__name__}")
    _BACKENDS[backend.name] = backend
    return backend


def list_backends() -> list[str]:
    """Names of every known backend (registered or importable on demand)."""
    return sorted(set(_BACKENDS) | set(_LAZY))


def get_backend(name: str) -> Backend:
    """The backend `name`, importing its module on first use.

    Raises DctqError for an unknown name, BackendUnavailable when its module or runtime is missing.
    """
    if name not in _BACKENDS and name in _LAZY:
        try:
            importlib.import_module(_LAZY[name])
        except ModuleNotFoundError as exc:
            what = "it is not part of this dctq" if exc.name == _LAZY[name] else f"{exc.name} is missing"
            raise BackendUnavailable(
                f"backend {name!r} is not available here ({what}): {_INSTALL.get(name, '')}"
            ) from None
    if name not in _BACKENDS:
        raise DctqError(f"unknown backend {name!r}; known: {', '.join(list_backends())}")
    return _BACKENDS[name]


def default_backend(artifact: Artifact) -> str:
    """The backend that runs an artifact of this kind by default (onnx -> ort, checkpoint -> torch...)."""
    return DEFAULT_FOR_KIND[artifact.kind]


def load_runner(
    artifact: Artifact | Path | str,
    backend: str | None = None,
    *,
    device: str = "auto",
    trust_code: bool = False,
    **options: Any,
) -> Runner:
    """`get_backend(backend or default).load(artifact, ...)`, checking the backend takes this kind;
    `artifact` is a loaded Artifact or the path of one (.pt, .onnx, .ts, .pt2, .engine). trust_code:
    load_artifact's, for a path (a loaded Artifact carries its own `trusted`).

    Raises DctqError when it does not (e.g. ort with a .pt checkpoint), BackendUnavailable as get_backend,
    and what load_artifact raises for a path.
    """
    if not isinstance(artifact, Artifact):
        artifact = load_artifact(artifact, trust_code=trust_code)
    name = backend or default_backend(artifact)
    chosen = get_backend(name)
    if artifact.kind not in chosen.accepts:
        raise DctqError(
            f"backend {name!r} cannot run a {artifact.kind} ({artifact.path.name}); it takes "
            f"{', '.join(chosen.accepts)}. Use --backend {default_backend(artifact)}, or export the model first"
        )
    return chosen.load(artifact, device=device, **options)
