"""Latency and throughput of the PyTorch backend on CUDA: eager or torch.compile, FP32 or FP16/BF16
autocast, a batch sweep, and an end-to-end mode from JPEG bytes to predictions.

Model mode (`profile_cuda`): per batch size, each timed iteration records CUDA events around three
phases on one stream: H2D (the batch's host inputs, pinned, in their wire form: int16 coefficients
and float32 tables for DCT models, uint8 HWC pixels for RGB ones), compute (type conversion, RGB
normalisation as jpeg/rgb.py's, the forward pass) and D2H (the logits). Reported: p50/p90/p99/mean
per phase and in total, and images/s at the p50 total. The stream synchronises after every iteration: this is latency.

End-to-end mode (`profile_end_to_end`): a list of JPEG byte strings through gpu_input's DctInput or
RgbInput (reading/decoding in threads, pinned upload, conversion on the GPU) into the model and back
as class indices: images/s over the whole run plus the input path's TransferStats. Both pipelines
get the same bytes, batch size, workers and precision, so their numbers compare on equal terms.

device "cpu" runs the same code with host timers (no autocast for FP16 there): what the CPU tests
use. The latency profiler of any artifact on any backend is profiling/latency.py; both report `Latency`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ...common.devices import resolve_device
from ...common.errors import ModelError
from ...jpeg.batch import DCT_INPUTS, model_inputs
from ...jpeg.rgb import CIFAR10_MEAN, CIFAR10_STD, normalize_pixels
from ..artifact import input_specs
from .gpu_input import DctInput, RgbInput, TransferStats
from .latency import Latency, synthetic_batch

logger = logging.getLogger(__name__)

PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclasses.dataclass(frozen=True)
class ProfileConfig:
    """batch_sizes: the sweep. warmup / iters: untimed / timed iterations per batch size.
    precision: "fp32" | "fp16" | "bf16" (autocast). compile: torch.compile the model (mode
    `compile_mode`). device: "cuda", "cuda:1" or "cpu". channels_last: NHWC weights and activations."""

    batch_sizes: tuple[int, ...] = (1, 32, 256)
    warmup: int = 10
    iters: int = 50
    precision: str = "fp16"
    compile: bool = False
    compile_mode: str | None = None
    device: str = "cuda"
    channels_last: bool = True

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ModelError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ModelError(f"batch_sizes must be positive, got {self.batch_sizes}")
        if self.iters < 1 or self.warmup < 0:
            raise ModelError(f"iters must be >= 1 and warmup >= 0, got {self.iters}, {self.warmup}")


@dataclasses.dataclass(frozen=True)
class ProfileRow:
    """One batch size: latency per phase and in total; images/s = batch / p50 total."""

    batch: int
    h2d: Latency
    compute: Latency
    d2h: Latency
    total: Latency
    h2d_bytes: int

    @property
    def images_per_second(self) -> float:
        return self.total.rate(self.batch)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "images_per_second": self.images_per_second}


@dataclasses.dataclass(frozen=True)
class EndToEndResult:
    """JPEG bytes -> predictions: images, wall seconds, images/s, and the input path's transfers."""

    pipeline: str
    images: int
    seconds: float
    transfers: TransferStats
    predictions: tuple[int, ...]

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "images": self.images,
            "seconds": self.seconds,
            "images_per_second": self.images_per_second,
            "transfers": self.transfers.to_dict(),
        }


def _autocast(device: torch.device, precision: str) -> Any:
    dtype = PRECISIONS[precision]
    if dtype is None or device.type != "cuda":
        return torch.autocast(device.type, enabled=False)
    return torch.autocast("cuda", dtype=dtype)


def prepare_model(model: nn.Module, config: ProfileConfig) -> nn.Module:
    """`model` in eval mode on the config's device (NHWC if asked), compiled if asked."""
    device = resolve_device(config.device)
    model = model.eval().to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if config.compile:
        model = torch.compile(model, mode=config.compile_mode, dynamic=False)
    return model


class _Clock:
    """CUDA events on CUDA, perf_counter on CPU: mark(i) then elapsed(i, j) in ms after sync()."""

    def __init__(self, device: torch.device, marks: int) -> None:
        self.cuda = device.type == "cuda"
        self.device = device
        self.events = [torch.cuda.Event(enable_timing=True) for _ in range(marks)] if self.cuda else []
        self.times = [0.0] * marks

    def mark(self, i: int) -> None:
        if self.cuda:
            self.events[i].record()
        else:
            self.times[i] = time.perf_counter()

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def elapsed(self, i: int, j: int) -> float:
        if self.cuda:
            return self.events[i].elapsed_time(self.events[j])
        return 1000.0 * (self.times[j] - self.times[i])


def _host_inputs(model: nn.Module, batch: int, pin: bool) -> tuple[torch.Tensor, ...]:
    """The batch as it leaves the host: int16 coefficients + float32 qt (latency.synthetic_batch), or
    uint8 NHWC pixels."""
    kind, size = getattr(model, "input_kind", None), getattr(model, "input_size", None)
    if kind == "dct":
        arrays = synthetic_batch(input_specs("dct", size), batch)
        host = tuple(
            torch.from_numpy(arrays[n].astype(np.int16) if n != "qt" else arrays[n]) for n in DCT_INPUTS
        )
    elif kind == "rgb":
        gen = torch.Generator().manual_seed(0)
        host = (torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8, generator=gen),)
    else:
        raise ModelError(f"{type(model).__name__} has no input_kind 'dct'/'rgb'; cannot make its inputs")
    return tuple(t.pin_memory() for t in host) if pin else host


def _on_device(
    model: nn.Module,
    dev: Sequence[torch.Tensor],
    channels_last: bool,
    stats: tuple[torch.Tensor, torch.Tensor],
) -> tuple[torch.Tensor, ...]:
    """The model's inputs from the uploaded wire form: RGB normalised as jpeg/rgb.py does, DCT as floats."""
    if getattr(model, "input_kind", None) == "rgb":
        out: tuple[torch.Tensor, ...] = (normalize_pixels(dev[0], *stats),)
    else:
        out = model_inputs(tuple(dev))  # type: ignore[assignment]
    if channels_last:
        out = tuple(t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t for t in out)
    return out


def profile_cuda(
    model: nn.Module, config: ProfileConfig | None = None, *, prepared: nn.Module | None = None
) -> list[ProfileRow]:
    """One ProfileRow per batch size of the sweep (see module docstring). `model` is a dctq model
    (it has `input_kind` and `input_size`); it is moved to the device and compiled as configured,
    unless `prepared` (prepare_model's result) is given.

    Raises BackendUnavailable without CUDA for a CUDA device, ModelError for a model without an
    input kind or a bad config.
    """
    config = config or ProfileConfig()
    device = resolve_device(config.device)
    raw = model
    prepared = prepared if prepared is not None else prepare_model(model, config)
    # mean/std on the device once: creating them per call would time a host-to-device copy as compute
    stats = tuple(torch.tensor(v, dtype=torch.float32, device=device) for v in (CIFAR10_MEAN, CIFAR10_STD))
    rows = []
    for batch in config.batch_sizes:
        host = _host_inputs(raw, batch, pin=device.type == "cuda")
        out_host = None
        clock = _Clock(device, 4)
        samples: list[list[float]] = [[], [], [], []]
        with torch.inference_mode(), _autocast(device, config.precision):
            for it in range(config.warmup + config.iters):
                clock.mark(0)
                dev = tuple(t.to(device, non_blocking=True) for t in host)
                clock.mark(1)
                logits = prepared(*_on_device(raw, dev, config.channels_last, stats))
                clock.mark(2)
                if out_host is None:
                    out_host = torch.empty(logits.shape, dtype=logits.dtype, pin_memory=device.type == "cuda")
                out_host.copy_(logits, non_blocking=True)
                clock.mark(3)
                clock.sync()
                if it >= config.warmup:
                    for k, (i, j) in enumerate(((0, 1), (1, 2), (2, 3), (0, 3))):
                        samples[k].append(clock.elapsed(i, j))
        rows.append(
            ProfileRow(
                batch=batch,
                h2d=Latency.of(samples[0]),
                compute=Latency.of(samples[1]),
                d2h=Latency.of(samples[2]),
                total=Latency.of(samples[3]),
                h2d_bytes=sum(t.numel() * t.element_size() for t in host),
            )
        )
        logger.info(
            "batch %d: p50 %.3f ms, %.0f images/s", batch, rows[-1].total.p50, rows[-1].images_per_second
        )
    return rows


def profile_end_to_end(
    model: nn.Module,
    sources: Sequence[bytes],
    *,
    batch_size: int = 64,
    config: ProfileConfig | None = None,
    workers: int = 4,
    size: tuple[int, int] | None = None,
    prepared: nn.Module | None = None,
) -> EndToEndResult:
    """JPEG bytes -> class indices through the model's own input path (DCT or RGB); see module docstring.

    size: pixels the batch is cropped/padded to (default: the model's input_size). prepared: the
    model already through prepare_model (to share one compiled model between calls). The first
    batch runs once untimed (warm-up). Raises ModelError for a model without an input kind.
    """
    config = config or ProfileConfig()
    device = resolve_device(config.device)
    prepared = prepared if prepared is not None else prepare_model(model, config)
    kind = getattr(model, "input_kind", None)
    if kind not in ("dct", "rgb"):
        raise ModelError(f"{type(model).__name__} has no input_kind 'dct'/'rgb'")
    size = size or (model.input_size, model.input_size)
    # FP16 holds every baseline coefficient exactly; BF16 (8-bit mantissa) does not, so it gets FP32 inputs.
    dtype = torch.float16 if device.type == "cuda" and config.precision == "fp16" else torch.float32
    make = DctInput if kind == "dct" else RgbInput

    def run(items: Sequence[bytes], path: Any) -> list[torch.Tensor]:
        preds = []
        with torch.inference_mode(), _autocast(device, config.precision):
            for batch in path.batches(items):
                inputs = batch.ready()
                if config.channels_last:
                    inputs = tuple(
                        t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t for t in inputs
                    )
                preds.append(prepared(*inputs).argmax(dim=1).to("cpu", non_blocking=True))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return preds

    run(sources[:batch_size], make(batch_size, size, device=device, dtype=dtype, workers=workers))
    path = make(batch_size, size, device=device, dtype=dtype, workers=workers)
    start = time.perf_counter()
    preds = run(sources, path)
    seconds = time.perf_counter() - start
    flat = tuple(int(p) for chunk in preds for p in chunk.tolist())
    return EndToEndResult(kind, len(flat), seconds, path.stats(), flat)
