"""The GPU input path: JPEG bytes -> batched tensors on the GPU, for the DCT and the RGB models alike.

DCT path: a thread pool reads the next batch's coefficients (`read_jpeg`; the libjpeg-turbo extension
releases the GIL) while the current batch runs; each file gets the evaluation data's preprocessing
(jpeg/dataset.preprocess_dct: zero chroma for grayscale, centre crop/pad to the model's block grid),
packed into pinned host buffers as int16 (qt as float32, exact for 16-bit tables), copied with
non-blocking copies on a side stream, and converted to FP16 there (FP16 holds every baseline
coefficient exactly). RGB path, for comparison on equal terms, with the preprocessing of the RGB
training data (jpeg/rgb.py): Pillow decodes in the same pool, centre crop (or placement of a smaller
image) to the pixel size, uint8 HWC pinned, the same side-stream copy, then NCHW, /255, mean/std
normalisation, the mean colour around smaller images, and FP16 on the GPU.

Host buffers are double-buffered: a buffer is refilled only after its previous copy finished, so
packing batch k+1 overlaps the copy and the model of batch k. Without CUDA (device "cpu") the same
code runs with plain tensors and no streams, which is what the CPU tests exercise.

Bytes per image crossing host-to-device: DCT 2*64*Hb*Wb (luma) + 2*128*(Hb/2)*(Wb/2) (chroma) +
4*192 (qt), i.e. 3 bytes per pixel plus 768 bytes; RGB 3*H*W. At 224 px: 151,296 vs 150,528 bytes.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...common.devices import resolve_device
from ...common.errors import DataError
from ...jpeg.batch import DCT_INPUTS, model_inputs
from ...jpeg.dataset import preprocess_dct
from ...jpeg.geometry import block_grid
from ...jpeg.reader import read_jpeg, read_jpeg_file
from ...jpeg.rgb import CIFAR10_MEAN, CIFAR10_STD, Box, decode_rgb, fit_pixels, normalize_pixels

Source = str | Path | bytes
Size = tuple[int, int]


def dct_h2d_bytes(height: int, width: int) -> int:
    """Bytes one image's DCT inputs move host-to-device: int16 luma and chroma, float32 qt [3, 64]."""
    hb, wb = block_grid((height, width))
    return 2 * 64 * hb * wb + 2 * 128 * (hb // 2) * (wb // 2) + 4 * 3 * 64


def rgb_h2d_bytes(height: int, width: int) -> int:
    """Bytes one image's RGB input moves host-to-device: uint8 HWC pixels."""
    return 3 * height * width


@dataclasses.dataclass(frozen=True)
class TransferStats:
    """What an input path moved and how long it took.

    images: images delivered. h2d_bytes: bytes copied host-to-device. h2d_seconds: copy time on the
    GPU (CUDA events around the copies; 0 on CPU). decode_seconds: wall time spent waiting for the
    reader threads (not hidden behind the previous batch). pack_seconds: host time packing batches.
    """

    images: int
    h2d_bytes: int
    h2d_seconds: float
    decode_seconds: float
    pack_seconds: float

    @property
    def bytes_per_image(self) -> float:
        return self.h2d_bytes / max(self.images, 1)

    @property
    def h2d_us_per_image(self) -> float:
        return 1e6 * self.h2d_seconds / max(self.images, 1)

    def to_dict(self) -> dict[str, float]:
        return {
            **dataclasses.asdict(self),
            "bytes_per_image": self.bytes_per_image,
            "h2d_us_per_image": self.h2d_us_per_image,
        }


@dataclasses.dataclass
class DeviceBatch:
    """One batch on the device: `inputs` in the model's argument order, the first `count` rows valid.

    Call `ready()` before using the tensors on another stream: it makes that stream wait for the copy
    and keeps the caching allocator from reusing the memory too early.
    """

    inputs: tuple[torch.Tensor, ...]
    count: int
    h2d_bytes: int
    event: Any = None

    def ready(self, stream: Any = None) -> tuple[torch.Tensor, ...]:
        if self.event is not None:
            stream = stream or torch.cuda.current_stream(self.inputs[0].device)
            stream.wait_event(self.event)
            for t in self.inputs:
                t.record_stream(stream)
        return self.inputs


class _Uploader:
    """Double-buffered pinned host buffers and a side stream (shared by the DCT and RGB paths)."""

    def __init__(
        self, shapes: dict[str, tuple[tuple[int, ...], torch.dtype]], device: torch.device | str
    ) -> None:
        self.device = resolve_device(device)
        self.cuda = self.device.type == "cuda"
        self.buffers = [
            {k: torch.zeros(s, dtype=d, pin_memory=self.cuda) for k, (s, d) in shapes.items()}
            for _ in range(2)
        ]
        self.done: list[Any] = [None, None]
        self.stream = torch.cuda.Stream(self.device) if self.cuda else None
        self.slot = 0
        self.timings: list[tuple[Any, Any]] = []
        self.h2d_bytes = 0

    def host(self) -> dict[str, torch.Tensor]:
        """The next free host buffer set (waits until its previous copy has finished)."""
        self.slot ^= 1
        if self.done[self.slot] is not None:
            self.done[self.slot].synchronize()
        return self.buffers[self.slot]

    def upload(
        self, count: int, convert: Callable[[dict[str, torch.Tensor]], tuple[torch.Tensor, ...]]
    ) -> DeviceBatch:
        host = {k: v[:count] for k, v in self.buffers[self.slot].items()}
        nbytes = sum(v.numel() * v.element_size() for v in host.values())
        self.h2d_bytes += nbytes
        if not self.cuda:
            return DeviceBatch(convert({k: v.clone() for k, v in host.items()}), count, nbytes)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        with torch.cuda.stream(self.stream):
            start.record(self.stream)
            dev = {k: v.to(self.device, non_blocking=True) for k, v in host.items()}
            end.record(self.stream)
            self.done[self.slot] = end
            inputs = convert(dev)
            ready = torch.cuda.Event()
            ready.record(self.stream)
        self.timings.append((start, end))
        return DeviceBatch(inputs, count, nbytes, ready)

    def h2d_seconds(self) -> float:
        if not self.cuda:
            return 0.0
        torch.cuda.synchronize(self.device)
        return sum(a.elapsed_time(b) for a, b in self.timings) / 1000.0


def _chunks(sources: Sequence[Source], batch_size: int) -> list[Sequence[Source]]:
    if batch_size < 1:
        raise DataError(f"batch_size must be >= 1, got {batch_size}")
    return [sources[i : i + batch_size] for i in range(0, len(sources), batch_size)]


def _prefetched(
    sources: Sequence[Source], batch_size: int, read: Callable[[Source], Any], workers: int
) -> Iterator[tuple[list[Any], float]]:
    """(decoded items of one batch, seconds waited for them); the next batch is read meanwhile."""
    chunks = _chunks(sources, batch_size)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending = [pool.submit(read, s) for s in chunks[0]] if chunks else []
        for k in range(len(chunks)):
            start = time.perf_counter()
            items = [f.result() for f in pending]
            waited = time.perf_counter() - start
            pending = [pool.submit(read, s) for s in chunks[k + 1]] if k + 1 < len(chunks) else []
            yield items, waited


class _InputPath:
    """What the DCT and RGB paths share: host buffers (`_host_shapes`) and the uploader, the reader
    threads (`_read` one source), timing of `pack` (subclasses `_fill` the host buffers), counters, stats.

    Args:
        batch_size: images per DeviceBatch (the last may hold fewer). size: (H, W) input pixels.
        device: where the batches go ("cuda", "cuda:1", "cpu": plain tensors, no streams).
        dtype: what the image inputs arrive as (FP16 by default; float32 for FP32 models).
        workers: reader threads.
    """

    def __init__(
        self,
        batch_size: int,
        size: Size,
        *,
        device: torch.device | str = "cuda",
        dtype: torch.dtype = torch.float16,
        workers: int = 4,
    ) -> None:
        self.batch_size, self.size, self.dtype, self.workers = batch_size, size, dtype, workers
        self.up = _Uploader(self._host_shapes(batch_size, size), device)
        self.decode_seconds = self.pack_seconds = 0.0
        self.images = 0

    def _host_shapes(self, batch_size: int, size: Size) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        """name -> (shape, dtype) of the host buffers of one batch."""
        raise NotImplementedError

    @staticmethod
    def _read(source: Source) -> Any:
        raise NotImplementedError

    def _fill(
        self, host: dict[str, torch.Tensor], items: Sequence[Any]
    ) -> Callable[[dict[str, torch.Tensor]], tuple[torch.Tensor, ...]]:
        """Write `items` into the host buffers; returns the conversion to run on the uploaded ones."""
        raise NotImplementedError

    def pack(self, items: Sequence[Any]) -> DeviceBatch:
        """Pack read items (at most batch_size) into the next host buffers and upload them."""
        start = time.perf_counter()
        convert = self._fill(self.up.host(), items)
        self.pack_seconds += time.perf_counter() - start
        self.images += len(items)
        return self.up.upload(len(items), convert)

    def batches(self, sources: Sequence[Source]) -> Iterator[DeviceBatch]:
        """DeviceBatches of `sources` (paths or bytes), reading the next batch while yielding one."""
        for items, waited in _prefetched(sources, self.batch_size, self._read, self.workers):
            self.decode_seconds += waited
            yield self.pack(items)

    def stats(self) -> TransferStats:
        return TransferStats(
            self.images, self.up.h2d_bytes, self.up.h2d_seconds(), self.decode_seconds, self.pack_seconds
        )


class DctInput(_InputPath):
    """JPEG sources -> DeviceBatch(y [N, 64, Hb, Wb], cbcr [N, 128, Hb/2, Wb/2], qt [N, 3, 64]).

    y and cbcr arrive as `dtype` (FP16 by default; float32 for FP32 models), qt as float32. Grayscale
    files get zero chroma, which is exactly what their colour decode is (neutral Cb = Cr = 128).
    Arguments as _InputPath's.
    """

    def _host_shapes(self, batch_size: int, size: Size) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        self.grid = hb, wb = block_grid(size)
        return {
            "y": ((batch_size, 64, hb, wb), torch.int16),
            "cbcr": ((batch_size, 128, hb // 2, wb // 2), torch.int16),
            "qt": ((batch_size, 3, 64), torch.float32),
        }

    _read = staticmethod(read_jpeg)

    def _convert(self, dev: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        return model_inputs(dev, names=DCT_INPUTS, int_dtype=self.dtype)  # type: ignore[return-value]

    def _fill(
        self, host: dict[str, torch.Tensor], coefs: Sequence[Any]
    ) -> Callable[[dict[str, torch.Tensor]], tuple[torch.Tensor, ...]]:
        """JpegCoefficients -> the host buffers, as preprocess_dct gives them."""
        y_h, c_h, q_h = host["y"].numpy(), host["cbcr"].numpy(), host["qt"].numpy()
        for i, c in enumerate(coefs):
            inputs = preprocess_dct(c, self.size)
            y_h[i], c_h[i], q_h[i] = inputs["y"], inputs["cbcr"], inputs["qt"]
        return self._convert


def _pixels(source: Source) -> np.ndarray:
    """[H, W, 3] uint8 pixels of a JPEG (path or bytes), decoded as the RGB models' data is (jpeg.rgb)."""
    data = source if isinstance(source, bytes) else read_jpeg_file(source)  # regular files only, bounded
    return decode_rgb(data, "<bytes>" if isinstance(source, bytes) else source)[0]


class RgbInput(_InputPath):
    """JPEG sources -> DeviceBatch(x [N, 3, H, W]): jpeg/rgb.py's preprocessing with the normalisation
    on the device: Pillow decode, centre crop (or placement) to the size, uint8 upload, then
    `normalize_pixels` ((x/255 - mean) / std, the mean colour around smaller images) and `dtype`.

    Arguments as _InputPath's (device, dtype, workers passed on as `options`), and the normalisation's
    per-channel `mean` and `std` of [0, 1] pixels (default CIFAR-10's, as the RGB training data).
    """

    def __init__(
        self,
        batch_size: int,
        size: Size,
        *,
        mean: Sequence[float] = CIFAR10_MEAN,
        std: Sequence[float] = CIFAR10_STD,
        **options: Any,
    ) -> None:
        super().__init__(batch_size, size, **options)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.up.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.up.device).view(1, 3, 1, 1)

    _read = staticmethod(_pixels)

    def _host_shapes(self, batch_size: int, size: Size) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        return {"x": ((batch_size, size[0], size[1], 3), torch.uint8)}

    def _convert(self, dev: dict[str, torch.Tensor], boxes: list[Box]) -> tuple[torch.Tensor, ...]:
        x = normalize_pixels(dev["x"], self.mean, self.std, boxes)
        return (x.to(self.dtype).contiguous(),)

    def _fill(
        self, host: dict[str, torch.Tensor], pixels: Sequence[np.ndarray]
    ) -> Callable[[dict[str, torch.Tensor]], tuple[torch.Tensor, ...]]:
        """[H, W, 3] uint8 pixels -> the host buffer, fitted to the size (fit_pixels)."""
        x_h = host["x"].numpy()
        boxes = [fit_pixels(p, self.size, out=x_h[i])[1] for i, p in enumerate(pixels)]
        return lambda dev: self._convert(dev, boxes)
