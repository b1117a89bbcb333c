"""A checkpoint to a deployable file in any export format: the dispatch behind `dctq export`.

`export_artifact(checkpoint, "onnx" | "torchscript" | "program" | "tensorrt", out)` loads the checkpoint,
picks the output path (the checkpoint's name with the format's suffix unless given), refuses to
overwrite the checkpoint, runs the format's exporter (onnx.export_onnx, torchscript.export_torchscript /
export_program, or the TensorRT engine build) and, for ONNX, checks the graph against TensorRT's Q/DQ
rules. The export succeeds whatever that check finds; the report travels in the ExportResult.

An ONNX file (a Q/DQ export, `dctq export ckpt.pt --format onnx`) exports to "tensorrt" too: the engine
is built from it directly (`dctq export model.onnx --format tensorrt`), its sidecar giving the recipe.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ...common.errors import ConfigError, DctqError
from ...common.files import check_output_dir, check_output_file
from ...models.checkpoint import load_checkpoint
from ..artifact import sidecar_path
from ..backends.tensorrt.build import BuildConfig, build_engine, export_engine
from ..onnx.lint import LintReport, lint_qdq
from ..triton.repository import export_triton
from .autoencoder import export_autoencoder_onnx
from .onnx import export_onnx
from .torchscript import export_program, export_torchscript

FORMATS = {
    "onnx": ".onnx",
    "torchscript": ".ts",
    "program": ".pt2",
    "tensorrt": ".engine",
    "triton": ".triton",
}
"""Export format -> suffix of the file written (the default output path; triton writes a folder)."""


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
    low_bit: bool = False,
) -> ExportResult:
    """Export a dctq checkpoint (.pt, float or quantized) to `fmt`, with a JSON sidecar beside it.

    Args:
        checkpoint: the checkpoint; or, for fmt "tensorrt" only, a Q/DQ .onnx file to build the engine from.
        fmt: "onnx" (FP32, or Q/DQ INT8 for TensorRT), "torchscript" (.ts), "program" (.pt2,
            torch.export), "tensorrt" (.engine built from the Q/DQ ONNX, written beside it) or "triton"
            (a Triton model repository folder taking JPEG bytes, deploy/triton/; the checkpoint's .engine
            is served too when it exists).
        out: the file to write; default the checkpoint's path with the format's suffix (FORMATS).
        opset: ONNX opset (onnx, tensorrt). static_batch: bake this batch in instead of a dynamic
            batch axis (onnx, program). max_batch: largest batch of the TensorRT optimization profile
            (min 1, opt min(32, max_batch)); triton: every model's max_batch_size. timing_cache: TensorRT timing-cache file, read and updated.
        dynamo: onnx exporter choice as export_onnx's (False: the deprecated TorchScript exporter).
        low_bit: onnx: export a model below 8 bits on its trained grid (Clip + int8/uint8 Q/DQ; ORT).

    Raises:
        DctqError: an unknown format, or `out` is the checkpoint itself (messages name the CLI flags).
        ConfigError: `out` without the format's suffix (dctq tells artifacts apart by it), an `out` that
            cannot be written (a folder, no permission), a static batch or max batch below 1; all checked
            before the checkpoint is loaded.
        And what load_checkpoint and the format's exporter raise (ExportError, QuantizationError,
        BackendUnavailable naming the extra to install).
    """
    if fmt not in FORMATS:
        raise DctqError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if static_batch is not None and static_batch < 1:
        raise ConfigError(
            f"--static-batch must be >= 1 (leave it out for a dynamic batch), got {static_batch}"
        )
    if max_batch < 1:
        raise ConfigError(f"--max-batch must be >= 1, got {max_batch}")
    checkpoint = Path(checkpoint)
    if checkpoint.suffix.lower() == ".onnx":
        return _engine_from_onnx(checkpoint, fmt, out, static_batch, _build_config(max_batch, timing_cache))
    target = Path(out) if out is not None else checkpoint.with_suffix(FORMATS[fmt])
    if fmt != "triton" and target.suffix.lower() != FORMATS[fmt]:  # a repository is any folder
        raise ConfigError(
            f"--out {target}: a {fmt} export must end in {FORMATS[fmt]} (dctq and its runtimes tell "
            f"artifacts apart by suffix); use --out {target.with_suffix(FORMATS[fmt])}"
        )
    if target.resolve() == checkpoint.resolve():
        raise DctqError(f"--out {target} would overwrite the checkpoint; choose another path")
    if fmt == "triton":
        check_output_dir(target, "--out")  # a model repository is a folder
    else:
        check_output_file(target, "--out")
    loaded = load_checkpoint(checkpoint)
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
            example_batch=1 if static_batch is None else static_batch,
            dynamo=dynamo,
            low_bit=low_bit,
        )
        lint = lint_qdq(target)
    elif fmt == "tensorrt":
        export_engine(loaded, target, _build_config(max_batch, timing_cache), opset=opset)
    elif fmt == "triton":
        # A TensorRT plan of the same checkpoint (`--format tensorrt`) is served too, when it is there.
        engine = checkpoint.with_suffix(FORMATS["tensorrt"])
        repo = export_triton(
            loaded,
            target,
            name=checkpoint.stem,
            max_batch=max_batch,
            engine=engine if engine.is_file() else None,
            opset=opset,
            dynamo=dynamo,
        )
        lint = repo.lint
        return ExportResult(
            target, sidecar_path(repo.onnx), fmt, bool(loaded.extra.get("quant_recipe")), lint
        )
    elif fmt == "torchscript":
        export_torchscript(loaded, target)
    else:
        example = 2 if static_batch is None else static_batch
        export_program(loaded, target, dynamic_batch=static_batch is None, example_batch=example)
    return ExportResult(
        artifact=target,
        sidecar=sidecar_path(target),
        format=fmt,
        quantized=bool(loaded.extra.get("quant_recipe")),
        lint=lint,
    )


def _build_config(max_batch: int, timing_cache: Path | str | None) -> BuildConfig:
    """The engine build of `dctq export --format tensorrt`: batches 1..max_batch, optimised for min(32, max_batch)."""
    cache = Path(timing_cache) if timing_cache is not None else None
    return BuildConfig(batch=(1, min(32, max_batch), max_batch), timing_cache=cache)


def _engine_from_onnx(
    onnx_path: Path, fmt: str, out: Path | str | None, static_batch: int | None, config: BuildConfig
) -> ExportResult:
    """`dctq export model.onnx --format tensorrt`: the engine built from a Q/DQ ONNX file (default
    path: the ONNX file's with `.engine`). Raises DctqError for another format or --static-batch."""
    if fmt != "tensorrt":
        raise DctqError(
            f"{onnx_path} is an ONNX file: it exports to --format tensorrt only; export {fmt} from the checkpoint (.pt)"
        )
    if static_batch is not None:
        raise DctqError(
            "--static-batch does not apply to an .onnx input (its batch axis is already exported); "
            "the engine takes batches 1..--max-batch"
        )
    target = Path(out) if out is not None else onnx_path.with_suffix(FORMATS["tensorrt"])
    if target.resolve() == onnx_path.resolve():
        raise DctqError(f"--out {target} would overwrite the ONNX file; choose another path")
    check_output_file(target, "--out")
    sidecar = build_engine(onnx_path, target, config)
    return ExportResult(
        artifact=target,
        sidecar=sidecar_path(target),
        format="tensorrt",
        quantized=bool(sidecar.get("recipe")),
    )
