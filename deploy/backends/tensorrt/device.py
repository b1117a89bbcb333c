"""One CUDA device as a TensorRT engine uses it: the device guard, streams and their ordering, tensors
allocated at TensorRT's alignment, CUDA graphs, and what the device is (GPU, compute capability, CUDA).

TrtEngine and build_engine make every torch.cuda call through a CudaDevice, so the stream logic of
an engine is written against one small interface: the real one here, and a CPU stand-in in the
tests (tests/fake_tensorrt.py) that records the ordering calls and checks them.

    device = cuda_device(None)            # the current CUDA device; cuda_device(1) for cuda:1
    with device.guard():                  # TensorRT binds and enqueues on the current device
        stream = device.new_stream()
        stream.wait_stream(device.current_stream())
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ....common.errors import BackendUnavailable, DctqError

ALIGNMENT = 256
"""Bytes: TensorRT needs every I/O tensor address to be a multiple of this (torch's CUDA allocator
gives 512-byte aligned blocks; views with an offset may not be)."""


class CudaDevice:
    """One CUDA device through torch.cuda. Raises BackendUnavailable without CUDA and DctqError for an
    index beyond the devices present."""

    def __init__(self, index: int | None = None) -> None:
        import torch

        if not torch.cuda.is_available():
            raise BackendUnavailable(
                "no CUDA device: TensorRT engines run on NVIDIA GPUs (torch.cuda.is_available() is False); "
                "use the onnxruntime backend on CPU"
            )
        count = torch.cuda.device_count()
        self.index = torch.cuda.current_device() if index is None else int(index)
        if not 0 <= self.index < count:
            raise DctqError(
                f"no CUDA device {self.index}: this machine has {count} (cuda:0..cuda:{count - 1})"
            )
        self.torch_device = torch.device("cuda", self.index)

    def __str__(self) -> str:
        return str(self.torch_device)

    def guard(self) -> Any:
        """Context manager making this device current (bind, enqueue and capture run under it)."""
        import torch

        return torch.cuda.device(self.index)

    def new_stream(self) -> Any:
        """A new stream on this device. Engines never run on the legacy default stream (handle 0):
        TensorRT synchronises the whole device around work queued there."""
        import torch

        return torch.cuda.Stream(self.torch_device)

    def current_stream(self) -> Any:
        """The caller's stream on this device (torch's current stream)."""
        import torch

        return torch.cuda.current_stream(self.torch_device)

    def use(self, stream: Any) -> Any:
        """Context manager making `stream` torch's current stream (allocations and copies go there)."""
        import torch

        return torch.cuda.stream(stream)

    def keep_alive(self, tensor: Any, stream: Any) -> None:
        """Tell the caching allocator that `stream` uses `tensor`: its memory is not reused before
        the work queued there so far is done. Host tensors need no such care."""
        if tensor.is_cuda:
            tensor.record_stream(stream)

    def empty(self, shape: Sequence[int], dtype: Any) -> Any:
        """An uninitialised tensor on this device (the allocator aligns it for TensorRT)."""
        import torch

        return torch.empty(tuple(shape), dtype=dtype, device=self.torch_device)

    def new_graph(self) -> Any:
        import torch

        return torch.cuda.CUDAGraph()

    def capture(self, graph: Any, stream: Any) -> Any:
        """Context manager capturing the work queued on `stream` into `graph`."""
        import torch

        return torch.cuda.graph(graph, stream=stream)

    def synchronize(self) -> None:
        import torch

        torch.cuda.synchronize(self.torch_device)

    def properties(self) -> dict[str, Any]:
        """{"cuda": torch's CUDA runtime version, "gpu": name, "compute_capability": "M.m"}."""
        import torch

        props = torch.cuda.get_device_properties(self.index)
        return {
            "cuda": torch.version.cuda,
            "gpu": props.name,
            "compute_capability": f"{props.major}.{props.minor}",
        }


def cuda_device(device: int | CudaDevice | None = None) -> CudaDevice:
    """`device` itself when it is a CudaDevice, else CudaDevice(device) (None: the current device)."""
    return device if isinstance(device, CudaDevice) else CudaDevice(device)
