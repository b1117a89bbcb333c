"""Run a TensorRT engine on torch CUDA tensors: deserialize, check, bind, enqueue, optionally replay.

    engine = TrtEngine("model.engine")                  # checks the sidecar against this machine
    logits, = engine(y, cbcr, qt)                       # torch tensors in, CUDA tensors out
    graph = engine.capture_cuda_graph({"y": y, ...})    # fixed shapes: one CUDA graph launch per call

Streams: the engine runs on a stream of its own, never on the legacy default stream (where TensorRT
synchronises the whole device around each launch). Each call makes that stream wait for the caller's
stream (torch's current one, or `stream=`), queues the work, and makes the caller's stream wait for
the engine's: the outputs are ready for the caller's later work, nothing blocks the host, and the
caching allocator is told which stream uses which tensor. Binding and enqueueing run under the
engine's CUDA device, whichever device is current.

Bindings: input shapes and addresses go through set_input_shape / set_tensor_address, whose refusals
are errors; a tensor whose address is not 256-byte aligned (a view with an offset) is copied first.

CUDA graphs get an execution context of their own: a graph replays the shapes and addresses it was
captured with, so the ordinary path may change its shapes (a smaller last batch) freely. Replays
return new tensors, not the graph's static output buffers.

An engine is tied to the TensorRT version and the GPU architecture that built it (unless built
version/hardware compatible, which dctq does not do), so a different TensorRT or compute capability
in the sidecar is an error naming both and the rebuild command; a different GPU model, CUDA or driver
is logged as a warning. One TrtEngine holds one execution context: use one per thread.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ....common.errors import ExportError, ModelError
from ...artifact import read_sidecar, sidecar_path
from .device import ALIGNMENT, CudaDevice, cuda_device
from .env import create_runtime, describe_environment, import_tensorrt, logger_verbosity

logger = logging.getLogger(__name__)

FATAL_KEYS = ("tensorrt", "compute_capability")
WARN_KEYS = ("gpu", "cuda", "driver")
REBUILD_HINT = "rebuild it here: `dctq export model.onnx --format tensorrt` (or build.build_engine)"


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
            f"TensorRT version and GPU architecture that built them: {REBUILD_HINT}"
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
    """A deserialized TensorRT engine with one execution context and one stream on one CUDA device.

    Args:
        engine_path: the `.engine` file (its `.engine.json` sidecar beside it).
        device: CUDA device index (default: the current one), or a device.CudaDevice.
        check: compare the sidecar with this machine (check_environment) and the engine's sha256.
        verbose: forward TensorRT's INFO/VERBOSE messages to logging while the engine loads.

    Raises BackendUnavailable (no TensorRT / CUDA, or TensorRT cannot start on this driver),
    ExportError (missing file, mismatched setup, a plan TensorRT refuses).
    """

    def __init__(
        self,
        engine_path: Path | str,
        *,
        device: int | CudaDevice | None = None,
        check: bool = True,
        verbose: bool = False,
    ) -> None:
        self.trt = trt = import_tensorrt()
        self.cuda = cuda_device(device)
        self.device = self.cuda.torch_device
        self.path = Path(engine_path)
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
                self.sidecar, describe_environment(trt, self.cuda), engine=str(self.path)
            ):
                logger.warning(warning)
            recorded = self.sidecar["build"].get("engine_sha256")
            if recorded and recorded != hashlib.sha256(plan).hexdigest():
                raise ExportError(
                    f"{self.path} does not match its sidecar (sha256 differs); rebuild the engine"
                )
        with self.cuda.guard(), logger_verbosity(trt, verbose):
            self.runtime = create_runtime(trt)
            self.engine = self.runtime.deserialize_cuda_engine(plan)
            if self.engine is None:
                raise ExportError(
                    f"TensorRT {trt.__version__} could not load {self.path} (see the log); {REBUILD_HINT}"
                )
            self.context = self.new_context()
            self.stream = self.cuda.new_stream()
        self.contexts = 1
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.dtypes = {n: torch_dtype(trt, self.engine.get_tensor_dtype(n)) for n in names}

    def new_context(self) -> Any:
        """A new execution context (its own activation memory). Raises ExportError when TensorRT
        cannot make one (out of device memory: see the log)."""
        context = self.engine.create_execution_context()
        if context is None:
            raise ExportError(
                f"TensorRT could not create an execution context for {self.path.name} (see the log)"
            )
        return context

    def memory(self) -> dict[str, int | None]:
        """Device memory TensorRT allocates itself for this engine, outside torch's allocator, in bytes:
        "weights" (the engine's weights), "context" (activations and scratch of one execution
        context: device_memory_size_v2) and "contexts" (how many this engine holds)."""
        weights = None
        if hasattr(self.trt, "EngineStat"):
            weights = int(self.engine.get_engine_stat(self.trt.EngineStat.TOTAL_WEIGHTS_SIZE))
        return {
            "weights": weights,
            "context": int(self.engine.device_memory_size_v2),
            "contexts": self.contexts,
        }

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

    def _aligned(self, t: Any) -> Any:
        """`t`, or a copy at an address TensorRT accepts (a multiple of ALIGNMENT bytes)."""
        if t.data_ptr() % ALIGNMENT:
            copy = self.cuda.empty(t.shape, t.dtype)
            copy.copy_(t)
            t = copy
            if t.data_ptr() % ALIGNMENT:
                raise ModelError(
                    f"cannot place a {list(t.shape)} tensor at a {ALIGNMENT}-byte aligned address"
                )
        return t

    def _address(self, context: Any, name: str, t: Any) -> None:
        if not context.set_tensor_address(name, t.data_ptr()):
            raise ModelError(
                f"TensorRT refused the address of {name!r} in {self.path.name} (shape {list(t.shape)}, "
                f"{t.dtype}; see the log)"
            )

    def bind(self, feeds: Mapping[str, Any], context: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """Set shapes and addresses of `context` (default: the engine's) for `feeds`, converted to the
        engine's types on torch's current stream, and for new output tensors. Returns (inputs as
        bound, outputs). Call it under the device guard with the engine's stream current (run does).
        Raises ModelError for missing inputs, shapes outside the profile, and bindings TensorRT refuses."""
        context = self.context if context is None else context
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise ModelError(f"{self.path.name} needs inputs {self.input_names}; missing {missing}")
        bound, outputs = {}, {}
        for name in self.input_names:
            t = feeds[name].to(device=self.device, dtype=self.dtypes[name], non_blocking=True).contiguous()
            t = self._aligned(t)
            shape = tuple(t.shape)
            self._check_shape(name, shape)
            if not context.set_input_shape(name, shape):
                raise ModelError(
                    f"TensorRT refused shape {list(shape)} for input {name!r} of {self.path.name} (see the log)"
                )
            self._address(context, name, t)
            bound[name] = t
        for name in self.output_names:
            shape = tuple(context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise ModelError(
                    f"TensorRT cannot tell the shape of output {name!r} ({list(shape)}) from the inputs bound"
                )
            out = self.cuda.empty(shape, self.dtypes[name])
            self._address(context, name, out)
            outputs[name] = out
        return bound, outputs

    def enqueue(self, stream: Any, context: Any = None) -> None:
        """execute_async_v3 of `context` (default: the engine's) on `stream` with its current bindings."""
        context = self.context if context is None else context
        if not context.execute_async_v3(stream.cuda_stream):
            raise ExportError(f"TensorRT failed to enqueue {self.path.name} (see the log)")

    def run(self, feeds: Mapping[str, Any], stream: Any = None) -> dict[str, Any]:
        """{output name: tensor} for {input name: tensor}. Ordered after the work queued so far on
        `stream` (default: torch's current stream), and that stream waits for the outputs: use them
        on it, or synchronise it before reading them elsewhere. The host does not wait."""
        caller = stream if stream is not None else self.cuda.current_stream()
        with self.cuda.guard():
            self.stream.wait_stream(caller)  # inputs produced on the caller's stream must be ready
            with self.cuda.use(self.stream):
                bound, outputs = self.bind(feeds)
                self.enqueue(self.stream)
            caller.wait_stream(self.stream)  # the caller's later work sees the outputs
        for t in bound.values():
            self.cuda.keep_alive(t, self.stream)  # the caller's tensors are read on the engine's stream
        for t in outputs.values():
            self.cuda.keep_alive(t, caller)  # allocated on the engine's stream, used on the caller's
        return outputs

    def __call__(self, *inputs: Any, stream: Any = None) -> tuple[Any, ...]:
        """Positional inputs in the engine's input order; outputs in its output order."""
        if len(inputs) != len(self.input_names):
            raise ModelError(
                f"{self.path.name} takes {len(self.input_names)} inputs {self.input_names}, got {len(inputs)}"
            )
        outputs = self.run(dict(zip(self.input_names, inputs, strict=True)), stream)
        return tuple(outputs[n] for n in self.output_names)

    def capture_cuda_graph(self, feeds: Mapping[str, Any], stream: Any = None) -> CudaGraphRunner:
        """A CudaGraphRunner replaying this engine for inputs shaped like `feeds` (copied as the static
        inputs, after the work queued on `stream`, default torch's current one). The graph gets its
        own execution context and stream; the engine runs once before the capture (TensorRT must see
        the shapes first)."""
        caller = stream if stream is not None else self.cuda.current_stream()
        with self.cuda.guard():
            context = self.new_context()
            self.contexts += 1
            graph_stream = self.cuda.new_stream()
            graph_stream.wait_stream(caller)
            with self.cuda.use(graph_stream):
                static = {n: feeds[n].to(self.device, self.dtypes[n]).clone() for n in self.input_names}
                bound, outputs = self.bind(static, context)
                self.enqueue(graph_stream, context)
            graph_stream.synchronize()
            graph = self.cuda.new_graph()
            with self.cuda.capture(graph, graph_stream):
                self.enqueue(graph_stream, context)
        return CudaGraphRunner(self, graph, context, bound, outputs, graph_stream)


class CudaGraphRunner:
    """Replays a captured engine launch on its own stream, ordered against the caller's stream both
    ways as TrtEngine.run is. Inputs are copied into the static input tensors; the outputs returned
    are new tensors (the static ones are overwritten by the next replay)."""

    def __init__(
        self,
        engine: TrtEngine,
        graph: Any,
        context: Any,
        inputs: dict[str, Any],
        outputs: dict[str, Any],
        stream: Any,
    ) -> None:
        self.engine, self.graph, self.context = engine, graph, context
        self.inputs, self.outputs, self.stream = inputs, outputs, stream

    def __call__(self, feeds: Mapping[str, Any] | Sequence[Any], stream: Any = None) -> dict[str, Any]:
        if not isinstance(feeds, Mapping):
            feeds = dict(zip(self.inputs, feeds, strict=True))
        for name, static in self.inputs.items():
            if tuple(feeds[name].shape) != tuple(static.shape):
                raise ModelError(
                    f"CUDA graph captured for {name} {list(static.shape)}, got {list(feeds[name].shape)}"
                )
        cuda = self.engine.cuda
        caller = stream if stream is not None else cuda.current_stream()
        with cuda.guard():
            self.stream.wait_stream(caller)
            with cuda.use(self.stream):
                for name, static in self.inputs.items():
                    static.copy_(feeds[name], non_blocking=True)
                self.graph.replay()
                results = {name: out.clone() for name, out in self.outputs.items()}
            caller.wait_stream(self.stream)
        for name in self.inputs:
            cuda.keep_alive(feeds[name], self.stream)
        for t in results.values():
            cuda.keep_alive(t, caller)
        return results
