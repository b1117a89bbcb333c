"""The TensorRT backend ("tensorrt"): `.engine` artifacts (tensorrt/build.build_engine) on an NVIDIA GPU.

    runner = load_runner(load_artifact("model.engine"), "tensorrt")   # or get_backend("tensorrt")
    logits = runner.predict({"y": y, "cbcr": cbcr, "qt": qt})         # float32 [N, classes] on the GPU

Batches may hold int16/float tensors or numpy arrays, on the CPU or the GPU; they are converted on
the GPU to the engine's input types (tensorrt/engine.TrtEngine). Options: `cuda_graph=True` replays a
CUDA graph for batches of the shape seen first (other shapes, such as a smaller last batch, run
normally on the engine's own execution context); `check=False` skips the sidecar's version check.
`native_memory_mb()` is the device memory TensorRT holds outside torch's allocator (the profiler's
memory column adds it). Importing this module does not import tensorrt: loading an engine does,
and raises BackendUnavailable with the install command where it is missing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch

from ....common.errors import BackendUnavailable, DctqError
from ....jpeg.batch import model_inputs
from ...artifact import Artifact, require_trusted
from ..registry import register_backend
from .engine import TrtEngine

logger = logging.getLogger(__name__)


def cuda_index(device: str) -> int | None:
    """The CUDA device index of "auto" / "cuda" (None: the current device) or "cuda:N".

    Raises BackendUnavailable for "cpu" and DctqError for anything else.
    """
    if device in ("auto", "cuda"):
        return None
    if device.startswith("cuda:") and device[5:].isdigit():
        return int(device[5:])
    if device == "cpu":
        raise BackendUnavailable(
            "TensorRT runs on NVIDIA GPUs only (asked for 'cpu'); use --backend ort on the CPU"
        )
    raise DctqError(f"unknown device {device!r} for TensorRT; use auto, cuda or cuda:N")


class TrtRunner:
    """A TrtEngine behind the Runner interface of deploy/backends.py."""

    backend = "tensorrt"

    def __init__(
        self, artifact: Artifact, *, device: str = "auto", cuda_graph: bool = False, check: bool = True
    ) -> None:
        require_trusted(artifact)  # an engine is native code (artifact.CODE_KINDS)
        self.artifact = artifact
        self.__name__ = f"tensorrt:{artifact.path.name}"
        self.engine = TrtEngine(artifact.path, device=cuda_index(device), check=check)
        self.device = str(self.engine.device)
        self.use_graph = cuda_graph
        self._graph: Any = None
        self._graph_shapes: dict[str, tuple[int, ...]] | None = None

    def _feeds(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        # Left in their types and on their device: TrtEngine converts on the GPU (int16 uploads half the
        # bytes of float32).
        names = self.engine.input_names
        inputs = model_inputs(batch, names=names, int_dtype=None, source=self.artifact.path.name)
        return dict(zip(names, inputs, strict=True))  # type: ignore[arg-type]

    def predict(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """Logits [N, classes] float32 on the engine's device (queued on the current stream)."""
        feeds = self._feeds(batch)
        name = self.engine.output_names[0]
        if self.use_graph:
            shapes = {k: tuple(v.shape) for k, v in feeds.items()}
            if self._graph is None:
                self._graph, self._graph_shapes = self.engine.capture_cuda_graph(feeds), shapes
            if shapes == self._graph_shapes:
                return self._graph(feeds)[name].float()
        return self.engine.run(feeds)[name].float()

    __call__ = predict

    def native_memory_mb(self) -> float | None:
        """MiB of device memory TensorRT allocated itself: the engine's weights plus each execution
        context's activation memory (None when the weights size is not reported, TensorRT 10)."""
        memory = self.engine.memory()
        if memory["weights"] is None:
            return None
        return (memory["weights"] + memory["context"] * memory["contexts"]) / 2**20

    def synchronize(self) -> None:
        self.engine.cuda.synchronize()


class TrtBackend:
    """TensorRT on a CUDA device. Options: cuda_graph (bool), check (bool)."""

    name = "tensorrt"
    accepts = ("engine",)

    def load(self, artifact: Artifact, *, device: str = "auto", **options: Any) -> TrtRunner:
        return TrtRunner(artifact, device=device, **options)


register_backend(TrtBackend())
