"""Latency and throughput of an artifact on a backend, per batch size; optionally end to end from files.

Each batch size runs `warmup` untimed then `iters` timed calls. Model-only mode feeds one fixed
random batch (integer-valued coefficients like real files); end-to-end mode times, per call,
reading `batch` JPEG files (read_jpeg, crop to the grid, stack) plus the run. Timing: CUDA events
around each call on CUDA (model-only), perf_counter after a synchronize otherwise.

Memory: what the timed calls add is `peak_rss_delta_mb`: on the CPU the rise of the process's peak
resident set (VmHWM, which Linux lets us reset per batch size through /proc/self/clear_refs) over the
resident set before the batch; on CUDA the rise of `torch.cuda.max_memory_allocated` over the
allocations before it, plus, for runtimes that allocate device memory themselves (a TensorRT engine's
weights and execution-context memory, which torch's allocator never sees), what the runner reports
through `native_memory_mb()`. `peak_mem_mb` is the whole process's peak (Python, torch, the runtime, the
model included), not the model's. tracemalloc would miss the runtimes' native allocations. Where the
reset is refused, ru_maxrss is used and the delta only shows growth beyond the earlier peak
(`memory_source` says which).

A quantized checkpoint (or TorchScript / torch.export program of one) on the torch backend runs its
fake-quant ops in float: the report marks it `simulated_int8`, because those timings say nothing of
INT8 speed (export to ONNX for ONNX Runtime's integer kernels, or build a TensorRT engine).
"""

from __future__ import annotations

import dataclasses
import logging
import resource
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...common.errors import ConfigError, DataError, DctqError
from ..artifact import Artifact, ArtifactMeta, TensorSpec, load_artifact
from ..backends.registry import Runner, default_backend, load_runner
from ..predict import read_input, stack_inputs

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Latency:
    """Milliseconds over the timed iterations (this profiler's calls, or a phase of profiling/cuda.py's)."""

    p50: float
    p90: float
    p99: float
    mean: float
    min: float

    @classmethod
    def of(cls, samples_ms: Sequence[float]) -> Latency:
        a = np.asarray(samples_ms, dtype=np.float64)
        p50, p90, p99 = np.percentile(a, [50, 90, 99])
        return cls(float(p50), float(p90), float(p99), float(a.mean()), float(a.min()))

    def rate(self, batch: int) -> float:
        """Images per second at the median: batch / p50 (inf when p50 is 0)."""
        return batch / (self.p50 / 1000.0) if self.p50 > 0 else float("inf")


@dataclasses.dataclass(frozen=True)
class BatchProfile:
    """Timings of one batch size (milliseconds per call), throughput (images per second), peak memory.

    JSON (`to_dict`): batch, iters, p50_ms, p90_ms, p99_ms, mean_ms, min_ms, throughput, peak_mem_mb,
    peak_rss_delta_mb.
    """

    batch: int
    iters: int
    latency: Latency
    peak_mem_mb: float | None
    peak_rss_delta_mb: float | None

    @property
    def p50_ms(self) -> float:
        return self.latency.p50

    @property
    def p90_ms(self) -> float:
        return self.latency.p90

    @property
    def p99_ms(self) -> float:
        return self.latency.p99

    @property
    def mean_ms(self) -> float:
        return self.latency.mean

    @property
    def min_ms(self) -> float:
        return self.latency.min

    @property
    def throughput(self) -> float:
        return self.latency.rate(self.batch)

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "iters": self.iters,
            **{f"{f.name}_ms": getattr(self.latency, f.name) for f in dataclasses.fields(Latency)},
            "throughput": self.throughput,
            "peak_mem_mb": self.peak_mem_mb,
            "peak_rss_delta_mb": self.peak_rss_delta_mb,
        }


@dataclasses.dataclass(frozen=True)
class ProfileReport:
    """One artifact on one backend over several batch sizes; `simulated_int8`: a quantized model whose
    fake-quant ops ran in float (torch backend), so the timings are not INT8 speed."""

    artifact: str
    backend: str
    device: str
    end_to_end: bool
    memory_source: str
    rows: tuple[BatchProfile, ...]
    simulated_int8: bool = False
    input_shape: tuple[int, ...] | None = None
    """Shape of one synthetic input image (without the batch), e.g. (3, 64, 64) for an SR model's LR input."""

    def to_dict(self) -> dict[str, Any]:
        return {
            **{f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "rows"},
            "rows": [r.to_dict() for r in self.rows],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "profile") -> ProfileReport:
        """Inverse of to_dict (`dctq profile --json` / `--out`). Raises DataError naming `source`."""
        try:
            rows = tuple(
                BatchProfile(
                    int(r["batch"]),
                    int(r["iters"]),
                    Latency(*(float(r[f"{f.name}_ms"]) for f in dataclasses.fields(Latency))),
                    r.get("peak_mem_mb"),
                    r.get("peak_rss_delta_mb"),
                )
                for r in data["rows"]
            )
            return cls(
                str(data["artifact"]),
                str(data["backend"]),
                str(data["device"]),
                bool(data["end_to_end"]),
                str(data.get("memory_source", "")),
                rows,
                simulated_int8=bool(data.get("simulated_int8", False)),
                input_shape=tuple(map(int, data["input_shape"])) if data.get("input_shape") else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{source} is not a dctq profile report ({type(exc).__name__}: {exc})") from None


def synthetic_batch(
    inputs: ArtifactMeta | Sequence[TensorSpec], batch: int, seed: int = 0, size: int | None = None
) -> dict[str, np.ndarray]:
    """Random float32 inputs of an artifact's (or input specs') shapes at `batch`, the profilers' one
    synthetic batch: coefficients y/cbcr as small integers (std 4 and 2), qt steps 1 + u + v (1..15),
    RGB standard normal (SR models: uniform in [0, 1]). Dynamic spatial axes (SR models' height and width)
    take `size`, default the artifact's input_size."""
    specs = inputs.inputs if isinstance(inputs, ArtifactMeta) else inputs
    side = size or (inputs.input_size if isinstance(inputs, ArtifactMeta) else 64)
    rng = np.random.default_rng(seed)
    out = {}
    for spec in specs:
        shape = (batch, *(int(d) if isinstance(d, int) else side for d in spec.shape[1:]))
        if isinstance(inputs, ArtifactMeta) and inputs.task == "sr":
            out[spec.name] = rng.random(size=shape, dtype=np.float32)
            continue
        if spec.name in ("y", "cbcr"):
            out[spec.name] = np.round(rng.normal(size=shape) * (4 if spec.name == "y" else 2)).astype(
                np.float32
            )
        elif spec.name == "qt":
            steps = (1 + np.arange(64) // 8 + np.arange(64) % 8).astype(np.float32)
            out[spec.name] = np.broadcast_to(steps, shape).copy()
        else:
            out[spec.name] = rng.normal(size=shape).astype(np.float32)
    return out


def list_jpegs(root: Path) -> list[Path]:
    """Every *.jpg / *.jpeg under `root`, sorted. Raises DataError when there is none."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"--data {root} is not a folder")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg") and p.is_file())
    if not files:
        raise DataError(f"no .jpg/.jpeg files under {root}")
    return files


def _rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * (resource.getpagesize() // 1024)


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def _peak_rss_kb() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


class _Feeder:
    """One call of the profiled work: run a fixed synthetic batch, or read the next `batch` files and run."""

    def __init__(
        self,
        runner: Runner,
        meta: ArtifactMeta,
        batch: int,
        files: list[Path] | None,
        size: int | None = None,
    ) -> None:
        self.runner, self.meta, self.batch, self.files = runner, meta, batch, files
        self.inputs = synthetic_batch(meta, batch, size=size) if files is None else None
        self.cursor = 0

    def __call__(self) -> None:
        if self.files is None:
            self.runner.predict(self.inputs)
            return
        picked = [self.files[(self.cursor + i) % len(self.files)] for i in range(self.batch)]
        self.cursor += self.batch
        self.runner.predict(stack_inputs([read_input(p, self.meta) for p in picked]))


def native_memory_mb(run: Runner) -> float | None:
    """MiB of device memory `run`'s runtime holds outside torch's allocator, when it says
    (`native_memory_mb()`, e.g. TrtRunner: engine weights + execution contexts); else None."""
    report = getattr(run, "native_memory_mb", None)
    value = report() if callable(report) else None
    return None if value is None else float(value)


class _Timer:
    """Per-call milliseconds: CUDA events on a CUDA runner (when `events`), else perf_counter."""

    def __init__(self, runner: Runner, events: bool) -> None:
        self.runner = runner
        self.cuda = events and runner.device.startswith("cuda")

    def time(self, fn: Callable[[], Any]) -> float:
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return float(start.elapsed_time(end))
        self.runner.synchronize()
        t0 = time.perf_counter()
        fn()
        self.runner.synchronize()
        return (time.perf_counter() - t0) * 1000.0


def profile(
    artifact: Artifact | Path | str,
    backend: str | None = None,
    batches: Sequence[int] = (1, 8, 32),
    *,
    warmup: int = 5,
    iters: int = 50,
    end_to_end_data: Path | str | None = None,
    device: str = "auto",
    runner: Runner | None = None,
    input_size: int | None = None,
    trust_code: bool = False,
    **options: Any,
) -> ProfileReport:
    """Latency percentiles, throughput and peak memory of `artifact` at each batch size.

    Args:
        backend: "ort", "torch", ...; default by artifact kind. options: passed to the backend's load
            (e.g. rewrite=False for ort); `threads` sets ONNX Runtime's intra-op threads, or torch's
            (torch.set_num_threads, restored afterwards) on the torch backend. runner: an already loaded
            runner (then backend/device are its own).
        end_to_end_data: a folder of JPEGs; each call then also reads `batch` of them (cycling).
        input_size: side of the synthetic images where the artifact's spatial axes are dynamic (SR models'
            LR input); default the artifact's input_size.
        trust_code: load a path of a kind that holds code (.ts, .pt2, .engine: artifact.CODE_KINDS).

    Raises:
        DctqError: bad batch sizes or counts. ConfigError: threads below 1, or threads on a backend
        without them (tensorrt). DataError: no JPEGs in end_to_end_data. Backend errors.
    """
    if not batches or any(b < 1 for b in batches) or warmup < 0 or iters < 1:
        raise DctqError(
            f"--batch sizes and --iters must be >= 1 and --warmup >= 0 (got --batch "
            f"{','.join(map(str, batches))}, --iters {iters}, --warmup {warmup})"
        )
    art = artifact if isinstance(artifact, Artifact) else load_artifact(artifact, trust_code=trust_code)
    name = runner.backend if runner is not None else backend or default_backend(art)
    threads = options.pop("threads", None) if name != "ort" else options.get("threads")
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {threads}")
    if threads is not None and name not in ("ort", "torch"):
        raise ConfigError(
            f"--threads sets ONNX Runtime's or torch's CPU threads; the {name} backend has none"
        )
    run = runner or load_runner(art, backend, device=device, **options)
    torch_threads = torch.get_num_threads()
    if threads is not None and name == "torch":
        torch.set_num_threads(threads)
    try:
        return _profile(art, run, batches, warmup, iters, end_to_end_data, input_size)
    finally:
        torch.set_num_threads(torch_threads)


def _profile(
    art: Artifact,
    run: Runner,
    batches: Sequence[int],
    warmup: int,
    iters: int,
    end_to_end_data: Path | str | None,
    input_size: int | None = None,
) -> ProfileReport:
    fixed = art.meta.fixed_batch
    if fixed is not None and any(b != fixed for b in batches):
        raise DctqError(
            f"{art.path.name} was exported with a fixed batch of {fixed}; profile --batch {fixed}"
        )
    files = list_jpegs(Path(end_to_end_data)) if end_to_end_data is not None else None
    cuda = run.device.startswith("cuda")
    can_reset = not cuda and _reset_peak_rss()
    memory_source = (
        "cuda.max_memory_allocated" if cuda else ("VmHWM reset per batch" if can_reset else "ru_maxrss")
    )
    native_mb = None
    timer = _Timer(run, events=files is None)
    rows = []
    for b in batches:
        call = _Feeder(run, art.meta, b, files, input_size)
        for _ in range(warmup):
            call()
        if cuda:
            native_mb = native_memory_mb(run)  # after the warm-up: a CUDA graph adds a context
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        else:
            _reset_peak_rss()
            base = _rss_kb()
        times = np.array([timer.time(call) for _ in range(iters)])
        if cuda:
            peak = torch.cuda.max_memory_allocated() / 2**20 + (native_mb or 0.0)
            delta = (torch.cuda.max_memory_allocated() - base) / 2**20
        else:
            peak_kb = _peak_rss_kb()
            peak, delta = peak_kb / 1024, max(0, peak_kb - base) / 1024
        rows.append(BatchProfile(b, iters, Latency.of(times), peak_mem_mb=peak, peak_rss_delta_mb=delta))
        logger.info("batch %d: p50 %.3f ms, %.1f img/s", b, rows[-1].p50_ms, rows[-1].throughput)
    if native_mb is not None:
        memory_source += f" + what the runtime allocated itself ({native_mb:.1f} MiB at the last batch size)"
    simulated = art.meta.quantized and run.backend == "torch"
    if simulated:
        logger.info(
            "%s is quantized but the torch backend runs its fake-quant ops in float: these timings are "
            "not INT8 speed (export it to ONNX or TensorRT for that)",
            art.path,
        )
    first = synthetic_batch(art.meta, 1, size=input_size)
    shape = tuple(first[art.meta.inputs[0].name].shape[1:]) if files is None else None
    return ProfileReport(
        str(art.path),
        run.backend,
        run.device,
        files is not None,
        memory_source,
        tuple(rows),
        simulated_int8=simulated,
        input_shape=shape,
    )
