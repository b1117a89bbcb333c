"""TensorRT where an engine is built or run: the guarded import, the process-wide logger, builder and
runtime creation with a diagnosis when they fail, and what an engine depends on (TensorRT, CUDA,
driver, GPU and compute capability).

Nothing imports tensorrt at module import time; `import_tensorrt` raises BackendUnavailable with the
install command where it is missing.

The logger: TensorRT keeps one logger per process, the first one handed to a builder, runtime or
refitter, and ignores the later ones (with a warning). So dctq makes one per tensorrt module and
passes it everywhere (as Polygraphy does); its verbosity is a setting of that one logger
(`logger_verbosity`), and it lives as long as the module, so TensorRT never holds a freed one.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.metadata
import logging
import re
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ....common.errors import BackendUnavailable
from .device import CudaDevice, cuda_device

logger = logging.getLogger(__name__)

INSTALL_HINT = "TensorRT not installed: pip install 'dctq[tensorrt]' (needs an NVIDIA GPU)"

MIN_DRIVER = {12: "535", 13: "580"}
"""CUDA major version of a TensorRT 11 build -> the oldest Linux driver branch that runs it (TensorRT
11.4 prerequisites: r580+ for the CUDA 13 packages and wheels, r535+ for the CUDA 12 wheels)."""

_LOGGERS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def import_tensorrt() -> Any:
    """The tensorrt module. Raises BackendUnavailable (with the install command) when it is missing,
    a placeholder package, or older than TensorRT 10."""
    try:
        import tensorrt as trt
    except Exception as exc:  # ImportError, or the placeholder packages' own errors at import
        raise BackendUnavailable(f"{INSTALL_HINT}; importing it failed: {exc}") from None
    if not hasattr(trt, "Builder"):  # a placeholder, or another module of that name on sys.path
        raise BackendUnavailable(
            f"{INSTALL_HINT}; the `tensorrt` found ({getattr(trt, '__file__', '?')}) is not TensorRT"
        )
    if trt_major(trt) < 10:
        raise BackendUnavailable(
            f"tensorrt {getattr(trt, '__version__', '?')} is too old (dctq needs TensorRT 10 or later, 11 "
            "recommended); pip install -U 'dctq[tensorrt]'"
        )
    return trt


def trt_major(trt: Any) -> int:
    """The major version of the tensorrt module (0 when it does not say)."""
    found = re.match(r"\d+", str(getattr(trt, "__version__", "")))
    return int(found.group()) if found else 0


def trt_logger(trt: Any) -> Any:
    """The process-wide tensorrt ILogger (one per tensorrt module, see the module docstring): it
    forwards TensorRT's messages to this module's logging, INFO and VERBOSE ones only while
    `logger_verbosity(trt, True)` is active."""
    if trt in _LOGGERS:
        return _LOGGERS[trt]
    levels = {
        trt.ILogger.INTERNAL_ERROR: logging.CRITICAL,
        trt.ILogger.ERROR: logging.ERROR,
        trt.ILogger.WARNING: logging.WARNING,
        trt.ILogger.INFO: logging.INFO,
        trt.ILogger.VERBOSE: logging.DEBUG,
    }
    quiet = (trt.ILogger.VERBOSE, trt.ILogger.INFO)

    class _Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.verbose = False

        def log(self, severity: Any, msg: str) -> None:
            if self.verbose or severity not in quiet:
                logger.log(levels.get(severity, logging.INFO), "TensorRT: %s", msg)

    _LOGGERS[trt] = made = _Logger()
    return made


@contextlib.contextmanager
def logger_verbosity(trt: Any, verbose: bool) -> Iterator[Any]:
    """Forward TensorRT's INFO and VERBOSE messages too (verbose=True) inside the block; yields the
    logger. The setting is the process-wide logger's: nested or concurrent blocks share it."""
    tlog = trt_logger(trt)
    before = tlog.verbose
    tlog.verbose = before or verbose
    try:
        yield tlog
    finally:
        tlog.verbose = before


def wheel_cuda_major(trt: Any) -> int | None:
    """The CUDA major version the installed TensorRT wheel was built for (12 or 13), from the name of
    the distribution that installed the module (tensorrt-cu13-bindings, tensorrt-cu12, ...); None when
    that cannot be told (tar or Debian installs)."""
    top = getattr(trt, "__name__", "tensorrt").split(".")[0]
    try:
        names = importlib.metadata.packages_distributions().get(top, [])
    except Exception:  # broken metadata of an unrelated package must not hide the real error
        return None
    for name in names:
        found = re.search(r"cu(\d+)", name)
        if found:
            return int(found.group(1))
    return 13 if names and trt_major(trt) >= 11 else None  # the bare `tensorrt` 11 wheel is the CUDA 13 build


def _driver_version() -> str:
    try:
        text = Path("/proc/driver/nvidia/version").read_text()
        found = re.search(r"Kernel Module\s+(?:for\s+\S+\s+)?([\d.]+)", text)
        if found:
            return found.group(1)
    except OSError:
        pass
    cuda = driver_cuda_version()
    return f"cuda-driver-api {cuda}" if cuda else "unknown"


def driver_cuda_version() -> str | None:
    """The newest CUDA version the installed driver supports ("13.0"), from libcuda; None without it."""
    try:
        version = ctypes.c_int()
        if ctypes.CDLL("libcuda.so.1").cuDriverGetVersion(ctypes.byref(version)) != 0:
            return None
    except (OSError, AttributeError):
        return None
    return f"{version.value // 1000}.{version.value % 1000 // 10}"


def _creation_failed(trt: Any, what: str, exc: Exception) -> BackendUnavailable:
    import torch

    major = wheel_cuda_major(trt)
    needed = (
        f"this TensorRT {trt.__version__} wheel is built for CUDA {major} and needs driver r{MIN_DRIVER[major]} or later"
        if major in MIN_DRIVER
        else f"TensorRT {trt.__version__} needs a driver for its CUDA version (r580+ for CUDA 13, r535+ for CUDA 12)"
    )
    found = (
        f"found driver {_driver_version()} (supports CUDA {driver_cuda_version() or 'unknown'}), "
        f"torch built for CUDA {torch.version.cuda or 'none (CPU build)'}"
    )
    fix = "update the NVIDIA driver"
    if major == 13:
        fix += ", or install the CUDA 12 build: pip uninstall tensorrt; pip install 'tensorrt-cu12>=11,<12'"
    return BackendUnavailable(f"TensorRT could not create its {what} ({exc}): {needed}; {found}. Fix: {fix}")


def create_builder(trt: Any) -> Any:
    """trt.Builder with the process-wide logger. Raises BackendUnavailable naming the driver and CUDA
    versions found and needed when TensorRT cannot start (the bindings raise a TypeError then)."""
    try:
        builder = trt.Builder(trt_logger(trt))
    except (TypeError, RuntimeError) as exc:
        raise _creation_failed(trt, "builder", exc) from None
    if builder is None:
        raise _creation_failed(trt, "builder", RuntimeError("no builder returned"))
    return builder


def create_runtime(trt: Any) -> Any:
    """trt.Runtime with the process-wide logger; raises as create_builder."""
    try:
        runtime = trt.Runtime(trt_logger(trt))
    except (TypeError, RuntimeError) as exc:
        raise _creation_failed(trt, "runtime", exc) from None
    if runtime is None:
        raise _creation_failed(trt, "runtime", RuntimeError("no runtime returned"))
    return runtime


def describe_environment(trt: Any, device: int | CudaDevice | None = None) -> dict[str, Any]:
    """What an engine depends on here: TensorRT, CUDA (torch's runtime), driver, GPU name and
    compute capability of CUDA device `device` (default: the current one)."""
    return {"tensorrt": str(trt.__version__), "driver": _driver_version(), **cuda_device(device).properties()}
