"""A checkpoint to a deployable file in any export format: the dispatch behind `dctq export`.

`export_artifact(checkpoint, "onnx" | "torchscript" | "program" | "tensorrt", out)` loads the checkpoint,
picks the output path (the checkpoint's name with the format's suffix unless given), refuses to
overwrite the checkpoint, runs the format's exporter (onnx.export_onnx, torchscript.export_torchscript /
export_program, or the TensorRT engine build) and, for ONNX, checks the graph against TensorRT's Q/DQ
rules. The export succeeds whatever that check finds; the report travels in the ExportResult.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ...common.errors import DctqError
from ...models.checkpoint import load_checkpoint
from ..artifact import sidecar_path
from ..backends.tensorrt.build import BuildConfig, export_engine
from ..onnx.lint import LintReport, lint_qdq
from .autoencoder import export_autoencoder_onnx
from .onnx import export_onnx
from .torchscript import export_program, export_torchscript

FORMATS = {"onnx": ".onnx", "torchscript": ".ts", "program": ".pt2", "tensorrt": ".engine"}
"""Export format -> suffix of the file written (the default output path)."""


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """What `export_artifact` wrote.

    artifact: the exported file; sidecar: its JSON sidecar. format: a key of FORMATS. quantized: the
    checkpoint holds a quantization recipe (Q/DQ INT8) rather than FP32 weights. lint: the TensorRT
    Q/DQ check of an ONNX export (None for the other formats).
    """

    artifact: Path
    sidecar: Path
    format: str
    quantized: bool
    lint: LintReport | None = None
    parts: tuple[Path, ...] = ()
    """An autoencoder's files: (encoder, decoder); `artifact` is the encoder."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form `dctq export --json` prints ("parts" only for an autoencoder's two files)."""
        return {
            "artifact": str(self.artifact),
            "sidecar": str(self.sidecar),
            "format": self.format,
            "quantized": self.quantized,
            "lint": self.lint.to_dict() if self.lint is not None else None,
            **({"parts": [str(p) for p in self.parts]} if self.parts else {}),
        }


def export_artifact(
    checkpoint: Path | str,
    fmt: str = "onnx",
    out: Path | str | None = None,
    *,
    opset: int = 18,
    static_batch: int | None = None,
    max_batch: int = 256,
    timing_cache: Path | str | None = None,
    dynamo: bool | None = None,
) -> ExportResult:
    """Export a dctq checkpoint (.pt, float or quantized) to `fmt`, with a JSON sidecar beside it.

    Args:
        fmt: "onnx" (FP32, or Q/DQ INT8 for TensorRT), "torchscript" (.ts), "program" (.pt2,
            torch.export) or "tensorrt" (.engine built from the Q/DQ ONNX, written beside it).
        out: the file to write; default the checkpoint's path with the format's suffix (FORMATS).
        opset: ONNX opset (onnx, tensorrt). static_batch: bake this batch in instead of a dynamic
            batch axis (onnx, program). max_batch: largest batch of the TensorRT optimization profile
            (min 1, opt min(32, max_batch)). timing_cache: TensorRT timing-cache file, read and updated.
        dynamo: onnx exporter choice as export_onnx's (False: the deprecated TorchScript exporter).

    Raises:
        DctqError: an unknown format, or `out` is the checkpoint itself (messages name the CLI flags).
        And what load_checkpoint and the format's exporter raise (ExportError, QuantizationError,
        BackendUnavailable naming the extra to install).
    """
    if fmt not in FORMATS:
        raise DctqError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    checkpoint = Path(checkpoint)
    loaded = load_checkpoint(checkpoint)
    target = Path(out) if out is not None else checkpoint.with_suffix(FORMATS[fmt])
    if target.resolve() == checkpoint.resolve():
        raise DctqError(f"--out {target} would overwrite the checkpoint; choose another path")
    lint = None
    if getattr(loaded.model, "task", "classify") == "autoencode":
        if fmt != "onnx" or static_batch is not None or dynamo is False:
            raise DctqError(
                f"{checkpoint} is an autoencoder: it exports to ONNX only (--format onnx, dynamic batch, dynamo "
                "exporter), as an encoder and a decoder graph"
            )
        parts = export_autoencoder_onnx(loaded, target, opset=opset)
        return ExportResult(
            artifact=parts[0],
            sidecar=sidecar_path(parts[0]),
            format=fmt,
            quantized=bool(loaded.extra.get("quant_recipe")),
            lint=lint_qdq(parts[0]) if loaded.extra.get("quant_recipe") else None,
            parts=parts,
        )
    if fmt == "onnx":
        export_onnx(
            loaded,
            target,
            opset=opset,
            dynamic_batch=static_batch is None,
            example_batch=static_batch or 1,
            dynamo=dynamo,
        )
        lint = lint_qdq(target)
    elif fmt == "tensorrt":
        batch = (1, min(32, max_batch), max_batch)
        cache = Path(timing_cache) if timing_cache is not None else None
        export_engine(loaded, target, BuildConfig(batch=batch, timing_cache=cache), opset=opset)
    elif fmt == "torchscript":
        export_torchscript(loaded, target)
    else:
        export_program(loaded, target, dynamic_batch=static_batch is None, example_batch=static_batch or 2)
    return ExportResult(
        artifact=target,
        sidecar=sidecar_path(target),
        format=fmt,
        quantized=bool(loaded.extra.get("quant_recipe")),
        lint=lint,
    )
