"""TensorRT and CUDA where an engine is built or run: the guarded import, TensorRT's logger routed to
logging, and what an engine depends on (TensorRT, CUDA, driver, GPU and compute capability).

Nothing imports tensorrt at module import time; `import_tensorrt` raises BackendUnavailable with the
install command where it is missing.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from ....common.errors import BackendUnavailable

logger = logging.getLogger(__name__)

INSTALL_HINT = "TensorRT not installed: pip install 'dctq[tensorrt]' (needs an NVIDIA GPU)"


def import_tensorrt() -> Any:
    """The tensorrt module. Raises BackendUnavailable (with the install command) when it is missing,
    a placeholder package, or older than TensorRT 10."""
    try:
        import tensorrt as trt
    except Exception as exc:  # ImportError, or the placeholder packages' own errors at import
        raise BackendUnavailable(f"{INSTALL_HINT}; importing it failed: {exc}") from None
    version = str(getattr(trt, "__version__", "0"))
    if not hasattr(trt, "Builder") or int(version.split(".")[0]) < 10:
        raise BackendUnavailable(
            f"tensorrt {version} is not usable here (dctq needs TensorRT 10 or later, 11 recommended); "
            "pip install -U 'dctq[tensorrt]'"
        )
    return trt


def require_cuda() -> Any:
    """torch, after checking that a CUDA device is there. Raises BackendUnavailable otherwise."""
    import torch

    if not torch.cuda.is_available():
        raise BackendUnavailable(
            "no CUDA device: TensorRT engines run on NVIDIA GPUs (torch.cuda.is_available() is False); "
            "use the onnxruntime backend on CPU"
        )
    return torch


def trt_logger(trt: Any, verbose: bool = False) -> Any:
    """A tensorrt ILogger that forwards TensorRT's messages to this module's logging."""
    levels = {
        trt.ILogger.INTERNAL_ERROR: logging.CRITICAL,
        trt.ILogger.ERROR: logging.ERROR,
        trt.ILogger.WARNING: logging.WARNING,
        trt.ILogger.INFO: logging.INFO,
        trt.ILogger.VERBOSE: logging.DEBUG,
    }

    quiet = () if verbose else (trt.ILogger.VERBOSE, trt.ILogger.INFO)

    class _Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity: Any, msg: str) -> None:
            if severity not in quiet:
                logger.log(levels.get(severity, logging.INFO), "TensorRT: %s", msg)

    return _Logger()


def _driver_version() -> str:
    try:
        text = Path("/proc/driver/nvidia/version").read_text()
        found = re.search(r"Kernel Module\s+(?:for\s+\S+\s+)?([\d.]+)", text)
        if found:
            return found.group(1)
    except OSError:
        pass
    try:
        import ctypes

        version = ctypes.c_int()
        ctypes.CDLL("libcuda.so.1").cuDriverGetVersion(ctypes.byref(version))
        return f"cuda-driver-api {version.value // 1000}.{version.value % 1000 // 10}"
    except OSError:
        return "unknown"


def describe_environment(trt: Any, device: int | None = None) -> dict[str, Any]:
    """What an engine depends on here: TensorRT, CUDA (torch's runtime), driver, GPU name and
    compute capability of CUDA device `device` (default: the current one)."""
    import torch

    index = torch.cuda.current_device() if device is None else device
    props = torch.cuda.get_device_properties(index)
    return {
        "tensorrt": str(trt.__version__),
        "cuda": torch.version.cuda,
        "driver": _driver_version(),
        "gpu": props.name,
        "compute_capability": f"{props.major}.{props.minor}",
    }
