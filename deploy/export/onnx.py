"""ONNX export of FP32 and fake-quant models: Q/DQ for TensorRT explicit quantization.

`torch.onnx.export(..., dynamo=True, external_data=False, opset_version=18)` with inputs named
y, cbcr, qt (DCT) or x [, qt] (RGB) and the output "logits" ("image" for SR models); the batch axis
dynamic unless asked otherwise, and for SR models (fully convolutional) height and width too. The fake-quant ops become QuantizeLinear/DequantizeLinear with int8 zero points 0
(calibration/quant/quantizer.py registers the fake kernels the dynamo exporter needs for a dynamic
batch). Should the dynamo exporter fail, the deprecated TorchScript exporter (dynamo=False) is
tried and the sidecar records which one ran.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...calibration.quant.export import prepare_for_export
from ...common.errors import ExportError
from ...common.files import atomic_path
from ...models.checkpoint import LoadedCheckpoint
from ...models.flops import example_inputs
from ..artifact import ArtifactMeta, describe_model, needs_qt, write_sidecar
from ..onnx.graph import import_onnx, opset_of

logger = logging.getLogger(__name__)

MIN_OPSET = 17

# Loggers of the exporter's internals: they warn about optional packages dctq never needs ("torchvision
# is not installed. Skipping torchvision::nms") and narrate the version conversion, on every export.
_EXPORTER_LOGGERS = ("torch.onnx", "onnxscript", "onnx_ir")


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """Silence the exporter's own warnings and log lines for the duration; errors still raise."""
    loggers = [logging.getLogger(name) for name in _EXPORTER_LOGGERS]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch's pytree deprecations, raised inside export
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*will not be used, since it shares the same shape.*")
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)


def max_opset() -> int:
    """The newest default-domain opset the installed onnx knows (its version converter's limit)."""
    from onnx import defs

    return int(defs.onnx_opset_version())


def _module(model: nn.Module | LoadedCheckpoint) -> nn.Module:
    return model.model if isinstance(model, LoadedCheckpoint) else model


def _example_args(model: nn.Module, batch: int) -> tuple[torch.Tensor, ...]:
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    args = example_inputs(model, batch, with_qt=needs_qt(model), device=device)
    return tuple(a.float() for a in args)


def _dynamic_axes(meta: ArtifactMeta, dynamic_batch: bool) -> dict[str, dict[int, str]]:
    """{tensor name: {axis: name}} of the axes that stay symbolic: the batch (when asked) and, for SR
    models, every named axis of the sidecar's shapes (height and width)."""
    axes: dict[str, dict[int, str]] = {}
    for spec in (*meta.inputs, *meta.outputs):
        named = {i: d for i, d in enumerate(spec.shape) if isinstance(d, str) and (i > 0 or dynamic_batch)}
        if named:
            axes[spec.name] = named
    return axes


def _dynamo_export(
    model: nn.Module, args: tuple, names: list[str], output: str, opset: int, axes: dict[str, dict[int, str]]
) -> Any:
    dims: dict[str, Any] = {}
    dynamic_shapes = None
    if axes:
        # "2*height" is the output's name for an input axis; torch.export derives outputs itself
        dynamic_shapes = tuple(
            {
                i: dims.setdefault(d, torch.export.Dim(d, min=2 if i else 1))
                for i, d in axes.get(n, {}).items()
            }
            for n in names
        )
    with quiet_exporter():
        program = torch.onnx.export(
            model,
            args,
            dynamo=True,
            external_data=False,
            opset_version=opset,
            input_names=names,
            output_names=[output],
            dynamic_shapes=dynamic_shapes,
            verbose=False,
        )
    return program.model_proto


def _legacy_export(
    model: nn.Module,
    args: tuple,
    names: list[str],
    output: str,
    opset: int,
    axes: dict[str, dict[int, str]],
    tmp: Path,
) -> Any:
    import onnx

    with quiet_exporter():  # the TorchScript exporter is deprecated and says so
        torch.onnx.export(
            model,
            args,
            str(tmp),
            dynamo=False,
            opset_version=opset,
            input_names=names,
            output_names=[output],
            dynamic_axes=axes or None,
        )
    return onnx.load(str(tmp))


def export_onnx(
    model: nn.Module | LoadedCheckpoint,
    path: Path | str,
    *,
    opset: int = 18,
    dynamic_batch: bool = True,
    example_batch: int = 1,
    dynamo: bool | None = None,
    low_bit: bool = False,
) -> Path:
    """Export an FP32 or fake-quant dctq model to ONNX at `path` (atomically) plus `<path>.json`.

    Args:
        model: a dctq model (DCT: forward(y, cbcr, qt); RGB: forward(x[, qt])) or a LoadedCheckpoint,
            whose arch and class names then go into the sidecar.
        opset: ONNX opset, >= 17 (TensorRT's Q/DQ rules need it).
        dynamic_batch: make the batch axis symbolic ("batch"); False bakes `example_batch` in.
        example_batch: batch of the example inputs traced.
        dynamo: True = torch.export-based exporter only, False = TorchScript exporter only,
            None = dynamo, falling back to TorchScript if it fails.
        low_bit: also export models below 8 bits, on their trained grid (calibration.quant.export).

    Returns the path written. Raises ExportError (opset outside MIN_OPSET..max_opset(), a graph the
    exporter wrote at another opset than asked, failed export or invalid graph), QuantizationError
    (uncalibrated or sub-8-bit quantizers), BackendUnavailable (onnx missing).
    """
    onnx = import_onnx("ONNX export", "onnx and onnxscript")
    if opset < MIN_OPSET:
        raise ExportError(
            f"opset {opset} is too old: TensorRT's explicit quantization needs opset >= {MIN_OPSET}"
        )
    if opset > max_opset():
        raise ExportError(
            f"opset {opset} does not exist in the installed onnx {onnx.__version__} (newest: {max_opset()}); "
            f"use --opset {MIN_OPSET}..{max_opset()}"
        )
    if example_batch < 1:
        raise ExportError(f"example_batch must be >= 1, got {example_batch}")
    path = Path(path)
    meta = describe_model(model, batch="batch" if dynamic_batch else example_batch, opset=opset)
    module = prepare_for_export(_module(model), low_bit=low_bit)
    args = _example_args(module, max(example_batch, 2) if dynamic_batch else example_batch)
    names = list(meta.input_names)
    output = meta.outputs[0].name
    axes = _dynamic_axes(meta, dynamic_batch)
    exporter, proto, first_error = None, None, None
    if dynamo is not False:
        try:
            proto, exporter = _dynamo_export(module, args, names, output, opset, axes), "dynamo"
        except Exception as exc:  # torch.export raises many kinds; the fallback below decides
            if dynamo:
                raise ExportError(
                    f"the dynamo ONNX exporter failed: {type(exc).__name__}: {str(exc)[:500]}"
                ) from exc
            first_error = exc
            logger.warning("dynamo ONNX export failed (%s); falling back to the TorchScript exporter", exc)
        if proto is not None and opset_of(proto) != opset and not dynamo:
            # The dynamo exporter writes its own opset and converts; where the conversion fails it keeps
            # its own (18 for 17). The TorchScript exporter writes older opsets natively.
            first_error = f"it wrote opset {opset_of(proto)} instead of {opset}"
            logger.info("dynamo ONNX export %s; using the TorchScript exporter", first_error)
            proto = None
    with atomic_path(path) as tmp:
        if proto is None:
            try:
                proto, exporter = (
                    _legacy_export(module, args, names, output, opset, axes, tmp),
                    "torchscript",
                )
            except Exception as exc:
                detail = f"; dynamo failed first with {first_error}" if first_error else ""
                raise ExportError(
                    f"ONNX export failed: {type(exc).__name__}: {str(exc)[:500]}{detail}"
                ) from exc
        try:
            onnx.checker.check_model(proto)
        except onnx.checker.ValidationError as exc:
            raise ExportError(f"the exported graph is not valid ONNX: {str(exc)[:500]}") from None
        written = opset_of(proto)
        if written != opset:
            # torch's exporter converts from its own opset and keeps that one when the conversion fails.
            raise ExportError(
                f"the {exporter} exporter could not write opset {opset} (its graph is at opset {written}); "
                f"use --opset {written}"
            )
        onnx.save_model(proto, str(tmp))
        meta = dataclasses.replace(meta, exporter=exporter)
        # The sidecar, bound to the finished file, lands first; then the model (artifact.py: kills).
        write_sidecar(path, meta, "onnx", artifact_file=tmp)
    logger.info(
        "exported %s ONNX (%s exporter, opset %d) to %s",
        "Q/DQ" if meta.quantized else "FP32",
        exporter,
        opset,
        path,
    )
    return path
