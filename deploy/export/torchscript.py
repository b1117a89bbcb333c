"""TorchScript (`.ts`, torch.jit.trace) and torch.export program (`.pt2`) export.

torch.jit is deprecated upstream but stays an export format here because C++ (libtorch) and
Torch-TensorRT deployments still load it; `torch.export` programs are its successor. Both keep the
fake-quant ops, so a quantized model runs the same numbers as in PyTorch. Each file gets the same
JSON sidecar as ONNX exports (`model.ts.json`, `model.pt2.json`).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from ...calibration.quant.export import prepare_for_export
from ...common.errors import ExportError
from ...common.files import atomic_path
from ...models.checkpoint import LoadedCheckpoint
from ..artifact import describe_model, write_sidecar
from .onnx import _example_args, _module

logger = logging.getLogger(__name__)


def export_torchscript(
    model: nn.Module | LoadedCheckpoint, path: Path | str, *, example_batch: int = 2
) -> Path:
    """Trace the model (float or fake-quant) with torch.jit.trace and save it to `path` plus its sidecar.

    The trace keeps batch-dependent shapes symbolic, so any batch size runs; the inputs are those of
    the sidecar (y, cbcr, qt / x [, qt]) as float32. Raises ExportError when tracing fails or the traced
    module disagrees with the model on the example inputs, QuantizationError as `prepare_for_export`.
    """
    path = Path(path)
    meta = describe_model(model, exporter="torch.jit.trace")
    module = prepare_for_export(_module(model))
    args = _example_args(module, example_batch)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated upstream
            traced = torch.jit.trace(module, args, check_trace=False)
            expected, got = module(*args), traced(*args)
    except Exception as exc:  # the tracer raises many kinds
        raise ExportError(f"torch.jit.trace failed: {type(exc).__name__}: {str(exc)[:500]}") from exc
    if not torch.allclose(expected, got, atol=1e-5, rtol=1e-5):
        raise ExportError(
            f"the traced module differs from the model by {float((expected - got).abs().max()):.3g}; "
            "the model has data-dependent control flow that tracing cannot keep"
        )
    with atomic_path(path) as tmp:
        torch.jit.save(traced, str(tmp))
        write_sidecar(path, meta, "torchscript", artifact_file=tmp)  # sidecar first (artifact.py: kills)
    logger.info("saved TorchScript to %s", path)
    return path


def export_program(
    model: nn.Module | LoadedCheckpoint,
    path: Path | str,
    *,
    dynamic_batch: bool = True,
    example_batch: int = 2,
) -> Path:
    """Save a `torch.export` program (`.pt2`, load with torch.export.load(path).module()) plus its sidecar.

    Raises ExportError when torch.export fails, QuantizationError as `prepare_for_export`.
    """
    path = Path(path)
    meta = describe_model(model, batch="batch" if dynamic_batch else example_batch, exporter="torch.export")
    module = prepare_for_export(_module(model))
    args = _example_args(module, max(example_batch, 2) if dynamic_batch else example_batch)
    shapes = None
    if dynamic_batch:
        batch = torch.export.Dim("batch")
        shapes = tuple({0: batch} for _ in args)
    try:
        program = torch.export.export(module, args, dynamic_shapes=shapes)
    except Exception as exc:  # torch.export raises many kinds
        raise ExportError(f"torch.export failed: {type(exc).__name__}: {str(exc)[:500]}") from exc
    with atomic_path(path) as tmp:
        with tmp.open("wb") as f:
            torch.export.save(program, f)  # a file object: torch.export.save wants a .pt2 name otherwise
        write_sidecar(path, meta, "program", artifact_file=tmp)  # sidecar first (artifact.py: kills)
    logger.info("saved torch.export program to %s", path)
    return path
