"""Latency and throughput of an artifact on a backend, per batch size; optionally end to end from files.

Each batch size runs `warmup` untimed then `iters` timed calls. Model-only mode feeds one fixed
random batch (integer-valued coefficients like real files); end-to-end mode times, per call,
reading `batch` JPEG files (read_jpeg, crop to the grid, stack) plus the run. Timing: CUDA events
around each call on CUDA (model-only), perf_counter after a synchronize otherwise.

Peak memory: on CUDA `torch.cuda.max_memory_allocated` after a reset; on the CPU the process's
peak resident set (VmHWM), which Linux lets us reset per batch size through /proc/self/clear_refs,
reported as the rise over the resident set before the batch (`peak_rss_delta_mb`). tracemalloc
would miss the runtimes' native allocations. Where the reset is refused, ru_maxrss is used and
the delta only shows growth beyond the earlier peak (`memory_source` says which).
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

from ...common.errors import DataError, DctqError
from ...common.files import atomic_path
from ..artifact import Artifact, ArtifactMeta, TensorSpec, load_artifact
from ..backends.registry import Runner, load_runner
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
    """One artifact on one backend over several batch sizes."""

    artifact: str
    backend: str
    device: str
    end_to_end: bool
    memory_source: str
    rows: tuple[BatchProfile, ...]
    input_shape: tuple[int, ...] | None = None
    """Shape of one synthetic input image (without the batch), e.g. (3, 64, 64) for an SR model's LR input."""

    def to_dict(self) -> dict[str, Any]:
        return {
            **{f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "rows"},
            "rows": [r.to_dict() for r in self.rows],
        }


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
    **options: Any,
) -> ProfileReport:
    """Latency percentiles, throughput and peak memory of `artifact` at each batch size.

    Args:
        backend: "ort", "torch", ...; default by artifact kind. options: passed to the backend's load
            (e.g. threads=1 for ort). runner: an already loaded runner (then backend/device are its own).
        end_to_end_data: a folder of JPEGs; each call then also reads `batch` of them (cycling).
        input_size: side of the synthetic images where the artifact's spatial axes are dynamic (SR models'
            LR input); default the artifact's input_size.

    Raises:
        DctqError: bad batch sizes or counts. DataError: no JPEGs in end_to_end_data. Backend errors.
    """
    if not batches or any(b < 1 for b in batches) or warmup < 0 or iters < 1:
        raise DctqError(
            f"batches must be >= 1 and iters >= 1 (got batches={list(batches)}, iters={iters}, warmup={warmup})"
        )
    art = artifact if isinstance(artifact, Artifact) else load_artifact(artifact)
    run = runner or load_runner(art, backend, device=device, **options)
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
    timer = _Timer(run, events=files is None)
    rows = []
    for b in batches:
        call = _Feeder(run, art.meta, b, files, input_size)
        for _ in range(warmup):
            call()
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        else:
            _reset_peak_rss()
            base = _rss_kb()
        times = np.array([timer.time(call) for _ in range(iters)])
        if cuda:
            peak = torch.cuda.max_memory_allocated() / 2**20
            delta = (torch.cuda.max_memory_allocated() - base) / 2**20
        else:
            peak_kb = _peak_rss_kb()
            peak, delta = peak_kb / 1024, max(0, peak_kb - base) / 1024
        rows.append(BatchProfile(b, iters, Latency.of(times), peak_mem_mb=peak, peak_rss_delta_mb=delta))
        logger.info("batch %d: p50 %.3f ms, %.1f img/s", b, rows[-1].p50_ms, rows[-1].throughput)
    first = synthetic_batch(art.meta, 1, size=input_size)
    shape = tuple(first[art.meta.inputs[0].name].shape[1:]) if files is None else None
    return ProfileReport(
        str(art.path), run.backend, run.device, files is not None, memory_source, tuple(rows), shape
    )


def _xy(box: tuple[int, int, int, int], i: int, n: int, value: float, top: float) -> tuple[float, float]:
    """Pixel position of point i of n with `value` in a panel `box` whose y axis spans [0, top]."""
    x0, y0, x1, y1 = box
    return x0 + (x1 - x0) * (i + 0.5) / n, y1 - (y1 - y0) * value / top


def plot_profile(report: ProfileReport, path: Path | str, *, width: int = 900, height: int = 380) -> Path:
    """PNG of p50 latency (with a p90..p99 bar) and throughput against batch size, drawn with Pillow.

    (matplotlib is not a dctq dependency; two small panels do not need it.)
    """
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    batches = [r.batch for r in report.rows]
    title = f"{Path(report.artifact).name} on {report.backend} ({report.device}){' end to end' if report.end_to_end else ''}"
    draw.text((10, 6), title, fill="black")
    panels = (
        (
            "latency p50 ms (bar: p90-p99)",
            [r.p50_ms for r in report.rows],
            [(r.p90_ms, r.p99_ms) for r in report.rows],
        ),
        ("throughput img/s", [r.throughput for r in report.rows], None),
    )
    pw = (width - 30) // 2
    for k, (label, values, spans) in enumerate(panels):
        x0, y0, x1, y1 = 10 + k * (pw + 10) + 45, 40, 10 + k * (pw + 10) + pw - 10, height - 40
        top = max([v for v in values] + [s[1] for s in spans or []]) * 1.1 or 1.0
        draw.rectangle((x0, y0, x1, y1), outline="gray")
        draw.text((x0, y0 - 16), label, fill="black")
        draw.text((x0 - 42, y0), f"{top:.3g}", fill="gray")
        draw.text((x0 - 12, y1 - 10), "0", fill="gray")

        box = (x0, y0, x1, y1)
        points = [_xy(box, i, len(values), v, top) for i, v in enumerate(values)]
        if len(points) > 1:
            draw.line(points, fill=(31, 119, 180), width=2)
        for i, (x, y) in enumerate(points):
            if spans:
                lo, hi = (_xy(box, i, len(values), v, top)[1] for v in spans[i])
                draw.line((x, lo, x, hi), fill=(214, 39, 40), width=3)
            draw.ellipse((x - 4, y - 4, x + 4, y + 4), fill=(31, 119, 180))
            draw.text((x - 10, y1 + 6), str(batches[i]), fill="black")
            draw.text((x + 6, y - 14), f"{values[i]:.3g}", fill="black")
        draw.text(((x0 + x1) // 2 - 15, y1 + 22), "batch", fill="gray")
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return Path(path)
