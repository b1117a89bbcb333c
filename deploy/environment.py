"""What this installation of dctq found: the JPEG reader it reads with, torch and CUDA, ONNX, ONNX
Runtime and TensorRT (`dctq env`). Nothing is required here: an absent package is reported with the
command that installs it, never raised.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import platform
import sys
from typing import Any

from .. import __version__
from ..jpeg.decoders import available_backends

READER_FIX = (
    "install the libjpeg headers (Debian: apt-get install libjpeg62-turbo-dev) and reinstall dctq "
    "to build the C extension"
)
"""How to get the fast reader where only jpeglib reads."""


@dataclasses.dataclass(frozen=True)
class Package:
    """An optional package: its version (None when absent) and what to do about it (or what it gives)."""

    name: str
    version: str | None
    note: str = ""


@dataclasses.dataclass(frozen=True)
class Environment:
    """The answers of `dctq env`.

    jpeg_reader: the backend reads use ("turbo": the libjpeg-turbo C extension; "jpeglib": the pure
    package, 10-40x slower; "none"). cuda: whether torch sees a CUDA device (gpus: their names).
    """

    dctq: str
    python: str
    platform: str
    jpeg_reader: str
    jpeg_readers: tuple[str, ...]
    torch: str
    torch_cuda_build: str | None
    cuda: bool
    gpus: tuple[str, ...]
    packages: tuple[Package, ...]

    @property
    def fast_reader(self) -> bool:
        return self.jpeg_reader == "turbo"

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["packages"] = {p.name: {"version": p.version, "note": p.note} for p in self.packages}
        out["fast_reader"] = self.fast_reader
        return out


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _ort_note() -> str:
    if importlib.util.find_spec("onnxruntime") is None:
        return "pip install 'dctq[onnx]'"
    try:
        import onnxruntime
    except Exception as exc:  # a broken install fails in many ways; report, do not raise
        return f"installed but does not import ({type(exc).__name__}: {exc})"
    return "providers: " + ", ".join(onnxruntime.get_available_providers())


def describe_environment() -> Environment:
    """Versions and capabilities found here (imports torch and, when installed, onnxruntime; never
    tensorrt, whose version comes from the package metadata)."""
    import torch

    readers = tuple(available_backends())
    cuda = bool(torch.cuda.is_available())
    gpus = tuple(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())) if cuda else ()
    trt = _version("tensorrt") or _version("tensorrt-cu12") or _version("tensorrt-cu13")
    packages = (
        Package(
            "jpeglib", _version("jpeglib"), "the reference reader, and the fallback without the extension"
        ),
        Package("onnx", _version("onnx"), "" if _version("onnx") else "pip install 'dctq[onnx]'"),
        Package(
            "onnxscript", _version("onnxscript"), "" if _version("onnxscript") else "pip install 'dctq[onnx]'"
        ),
        Package("onnxruntime", _version("onnxruntime"), _ort_note()),
        Package(
            "tensorrt",
            trt,
            ("needs a CUDA GPU to build and run engines" if not cuda else "")
            if trt
            else "pip install 'dctq[tensorrt]' (NVIDIA GPU)",
        ),
    )
    return Environment(
        dctq=__version__,
        python=sys.version.split()[0],
        platform=platform.platform(),
        jpeg_reader=readers[0] if readers else "none",
        jpeg_readers=readers,
        torch=torch.__version__,
        torch_cuda_build=torch.version.cuda,
        cuda=cuda,
        gpus=gpus,
        packages=packages,
    )
