"""Run a TensorRT engine on torch CUDA tensors: deserialize, check, bind, enqueue, optionally replay.

    engine = TrtEngine("model.engine")                  # checks the sidecar against this machine
    logits, = engine(y, cbcr, qt)                       # torch CUDA tensors in, out (async on the stream)
    graph = engine.capture_cuda_graph({"y": y, ...})    # fixed shapes: one CUDA graph launch per call

An engine is tied to the TensorRT version and the GPU architecture that built it (unless built
version/hardware compatible, which dctq does not do), so a different TensorRT or compute capability
in the sidecar is an error naming both and the rebuild command; a different GPU model, CUDA or driver
is logged as a warning. Inputs are converted on the GPU to the engine's types (FP16 coefficients, FP32
tables) and made contiguous; outputs are new tensors on the engine's stream. One TrtEngine holds one
execution context: use one per thread.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ....common.errors import ExportError, ModelError
from ...artifact import read_sidecar, sidecar_path
from .env import describe_environment, import_tensorrt, require_cuda, trt_logger

logger = logging.getLogger(__name__)

FATAL_KEYS = ("tensorrt", "compute_capability")
WARN_KEYS = ("gpu", "cuda", "driver")


def read_engine_sidecar(engine_path: Path | str) -> dict[str, Any] | None:
    """The engine's sidecar (artifact.read_sidecar of kind "engine": the artifact sidecar plus the
    "build" section of build.engine_sidecar), or None when there is none.

    Raises ExportError when it is unreadable, not an engine sidecar, or has no "build" section.
    """
    data = read_sidecar(engine_path, kind="engine")
    if data is not None and not isinstance(data.get("build"), dict):
        raise ExportError(f"{sidecar_path(engine_path)} has no 'build' section; rebuild the engine")
    return data


def check_environment(
    sidecar: Mapping[str, Any], current: Mapping[str, Any], *, engine: str = "the engine"
) -> list[str]:
    """Compare the sidecar's "build" section with `current` (describe_environment()).

    Returns warnings (GPU model, CUDA, driver differ: the engine may run slower or fail to load).
    Raises ExportError when the TensorRT version or the compute capability differs: TensorRT then
    refuses the plan, and the fix is a rebuild on this machine.
    """
    built = sidecar.get("build", {})
    fatal = [
        f"{key} {built.get(key)!r} at build time, {current.get(key)!r} here"
        for key in FATAL_KEYS
        if built.get(key) != current.get(key)
    ]
    if fatal:
        raise ExportError(
            f"{engine} was built for another setup: {'; '.join(fatal)}. TensorRT engines run only with the "
            "TensorRT version and GPU architecture that built them: rebuild it here "
            "(`dctq engine build model.onnx`, or deploy.backends.tensorrt.build.build_engine)"
        )
    return [
        f"{engine}: {key} was {built.get(key)!r} at build time, {current.get(key)!r} here"
        for key in WARN_KEYS
        if built.get(key) != current.get(key)
    ]


def torch_dtype(trt: Any, dtype: Any) -> Any:
    """The torch dtype of a tensorrt.DataType. Raises ExportError for types torch lacks."""
    import torch

    table = {
        "FLOAT": torch.float32,
        "HALF": torch.float16,
        "BF16": torch.bfloat16,
        "INT8": torch.int8,
        "UINT8": torch.uint8,
        "INT32": torch.int32,
        "INT64": torch.int64,
        "BOOL": torch.bool,
    }
    for name, value in table.items():
        if hasattr(trt.DataType, name) and dtype == getattr(trt.DataType, name):
            return value
    raise ExportError(f"engine tensor type {dtype} has no torch equivalent")


class TrtEngine:
    """A deserialized TensorRT engine with one execution context on one CUDA device.

    Args:
        engine_path: the `.engine` file (its `.engine.json` sidecar beside it).
        device: CUDA device index (default: the current one).
        check: compare the sidecar with this machine (check_environment) and the engine's sha256.
        verbose: forward TensorRT's VERBOSE messages to logging.

    Raises BackendUnavailable (no TensorRT / CUDA), ExportError (missing file, mismatched setup,
    a plan TensorRT refuses).
    """

    def __init__(
        self, engine_path: Path | str, *, device: int | None = None, check: bool = True, verbose: bool = False
    ) -> None:
        self.trt = trt = import_tensorrt()
        torch = require_cuda()
        self.path = Path(engine_path)
        self.device = torch.device("cuda", torch.cuda.current_device() if device is None else device)
        try:
            plan = self.path.read_bytes()
        except OSError as exc:
            raise ExportError(f"{self.path}: cannot read the engine ({exc.strerror or exc})") from None
        self.sidecar = read_engine_sidecar(self.path)
        if self.sidecar is None:
            logger.warning(
                "%s has no sidecar: versions cannot be checked before TensorRT loads it", self.path
            )
        elif check:
            for warning in check_environment(
                self.sidecar, describe_environment(trt, self.device.index), engine=str(self.path)
            ):
                logger.warning(warning)
            recorded = self.sidecar["build"].get("engine_sha256")
            if recorded and recorded != hashlib.sha256(plan).hexdigest():
                raise ExportError(
                    f"{self.path} does not match its sidecar (sha256 differs); rebuild the engine"
                )
        self._logger = trt_logger(trt, verbose)  # must outlive the runtime and engine
        with torch.cuda.device(self.device):
            self.runtime = trt.Runtime(self._logger)
            self.engine = self.runtime.deserialize_cuda_engine(plan)
            if self.engine is None:
                raise ExportError(
                    f"TensorRT {trt.__version__} could not load {self.path} (see the log); rebuild the engine here"
                )
            self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.dtypes = {n: torch_dtype(trt, self.engine.get_tensor_dtype(n)) for n in names}

    def profile(self, name: str) -> tuple[tuple[int, ...], ...]:
        """(min, opt, max) shapes input `name` accepts (profile 0)."""
        return tuple(tuple(s) for s in self.engine.get_tensor_profile_shape(name, 0))

    def _check_shape(self, name: str, shape: tuple[int, ...]) -> None:
        lo, _, hi = self.profile(name)
        if len(shape) != len(lo) or any(not a <= s <= b for a, s, b in zip(lo, shape, hi, strict=True)):
            raise ModelError(
                f"input {name!r} has shape {list(shape)}; {self.path.name} accepts {list(lo)} to {list(hi)}: "
                "rebuild with a wider batch/image_size profile or crop the input"
            )

    def bind(self, feeds: Mapping[str, Any], stream: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """Set shapes and addresses for `feeds` (converted to the engine's types on `stream`) and new
        output tensors. Returns (inputs as bound, outputs). Raises ModelError for missing inputs or
        shapes outside the profile."""
        import torch

        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise ModelError(f"{self.path.name} needs inputs {self.input_names}; missing {missing}")
        bound, outputs = {}, {}
        with torch.cuda.stream(stream):
            for name in self.input_names:
                t = (
                    feeds[name]
                    .to(device=self.device, dtype=self.dtypes[name], non_blocking=True)
                    .contiguous()
                )
                self._check_shape(name, tuple(t.shape))
                self.context.set_input_shape(name, tuple(t.shape))
                self.context.set_tensor_address(name, t.data_ptr())
                bound[name] = t
            for name in self.output_names:
                out = torch.empty(
                    tuple(self.context.get_tensor_shape(name)), dtype=self.dtypes[name], device=self.device
                )
                self.context.set_tensor_address(name, out.data_ptr())
                outputs[name] = out
        return bound, outputs

    def enqueue(self, stream: Any) -> None:
        """execute_async_v3 on the torch CUDA `stream` with the current bindings."""
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise ExportError(f"TensorRT failed to enqueue {self.path.name} (see the log)")

    def run(self, feeds: Mapping[str, Any], stream: Any = None) -> dict[str, Any]:
        """{output name: tensor} for {input name: tensor}; queued on `stream` (default: the current
        stream), not synchronised: read the outputs on that stream or after synchronising it."""
        import torch

        current = torch.cuda.current_stream(self.device)
        stream = stream or current
        if stream != current:
            stream.wait_stream(current)  # inputs produced on the caller's stream must be ready
        bound, outputs = self.bind(feeds, stream)
        self.enqueue(stream)
        for t in (*bound.values(), *outputs.values()):
            t.record_stream(stream)  # the caching allocator must not reuse them before the engine is done
        return outputs

    def __call__(self, *inputs: Any, stream: Any = None) -> tuple[Any, ...]:
        """Positional inputs in the engine's input order; outputs in its output order."""
        if len(inputs) != len(self.input_names):
            raise ModelError(
                f"{self.path.name} takes {len(self.input_names)} inputs {self.input_names}, got {len(inputs)}"
            )
        outputs = self.run(dict(zip(self.input_names, inputs, strict=True)), stream)
        return tuple(outputs[n] for n in self.output_names)

    def capture_cuda_graph(self, feeds: Mapping[str, Any]) -> CudaGraphRunner:
        """A CudaGraphRunner replaying this engine for inputs shaped like `feeds` (copied as the
        static inputs). The engine runs once first: TensorRT must see a shape before capture."""
        import torch

        stream = torch.cuda.Stream(self.device)
        with torch.cuda.stream(stream):
            static = {n: feeds[n].to(self.device, self.dtypes[n]).clone() for n in self.input_names}
        bound, outputs = self.bind(static, stream)
        self.enqueue(stream)
        stream.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=stream):
            self.enqueue(stream)
        return CudaGraphRunner(graph, bound, outputs, stream)


class CudaGraphRunner:
    """Replays a captured engine launch. Inputs are copied into the static input tensors; the returned
    outputs are the static output tensors, overwritten by the next call (clone to keep them)."""

    def __init__(self, graph: Any, inputs: dict[str, Any], outputs: dict[str, Any], stream: Any) -> None:
        self.graph, self.inputs, self.outputs, self.stream = graph, inputs, outputs, stream

    def __call__(self, feeds: Mapping[str, Any] | Sequence[Any]) -> dict[str, Any]:
        import torch

        if not isinstance(feeds, Mapping):
            feeds = dict(zip(self.inputs, feeds, strict=True))
        current = torch.cuda.current_stream(self.stream.device)
        self.stream.wait_stream(current)
        with torch.cuda.stream(self.stream):
            for name, static in self.inputs.items():
                if tuple(feeds[name].shape) != tuple(static.shape):
                    raise ModelError(
                        f"CUDA graph captured for {name} {list(static.shape)}, got {list(feeds[name].shape)}"
                    )
                static.copy_(feeds[name], non_blocking=True)
            self.graph.replay()
        current.wait_stream(self.stream)
        return self.outputs
