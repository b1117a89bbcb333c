"""`dctq export CKPT --format onnx|torchscript|program|tensorrt [--out PATH]`: a checkpoint to a deployable file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ..common.errors import DctqError
from ..deploy.artifact import sidecar_path
from ..deploy.backends.tensorrt.build import BuildConfig, export_engine
from ..deploy.export.onnx import export_onnx
from ..deploy.export.torchscript import export_program, export_torchscript
from ..deploy.onnx.lint import lint_qdq
from ..models.checkpoint import load_checkpoint
from .common import err_console, out_console, print_json, user_errors

FORMATS = {"onnx": ".onnx", "torchscript": ".ts", "program": ".pt2", "tensorrt": ".engine"}


def export_command(
    ctx: typer.Context,
    checkpoint: Annotated[
        Path, typer.Argument(help="A dctq checkpoint (.pt), float or quantized.", show_default=False)
    ],
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="onnx (FP32, or Q/DQ INT8 for TensorRT), torchscript (.ts, torch.jit.trace), program "
            "(.pt2, torch.export) or tensorrt (.engine: a strongly typed TensorRT 11 plan built from the "
            "Q/DQ ONNX, which is written beside it; needs `pip install 'dctq[tensorrt]'` and a GPU).",
        ),
    ] = "onnx",
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Output file (default: the checkpoint's name with the format's suffix)."),
    ] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset (17 or later).")] = 18,
    static_batch: Annotated[
        int | None,
        typer.Option("--static-batch", help="Bake this batch size in instead of a dynamic batch axis."),
    ] = None,
    max_batch: Annotated[
        int, typer.Option(help="tensorrt: largest batch of the optimization profile (min 1, opt 32).")
    ] = 256,
    timing_cache: Annotated[
        Path | None, typer.Option(help="tensorrt: timing-cache file, read and updated (faster rebuilds).")
    ] = None,
    legacy: Annotated[
        bool,
        typer.Option(
            "--legacy-exporter", help="ONNX: use the deprecated TorchScript exporter (dynamo=False)."
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
) -> None:
    """Export a checkpoint to ONNX, TorchScript or a torch.export program, with a JSON sidecar.

    Quantized ONNX graphs are checked against TensorRT's Q/DQ rules (as `dctq check` does) and the
    summary printed; the export itself succeeds either way.
    """
    with user_errors(ctx):
        if fmt not in FORMATS:
            raise DctqError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        loaded = load_checkpoint(checkpoint)
        target = out or checkpoint.with_suffix(FORMATS[fmt])
        if target.resolve() == checkpoint.resolve():
            raise DctqError(f"--out {target} would overwrite the checkpoint; choose another path")
        lint = None
        if fmt == "onnx":
            export_onnx(
                loaded,
                target,
                opset=opset,
                dynamic_batch=static_batch is None,
                example_batch=static_batch or 1,
                dynamo=False if legacy else None,
            )
            lint = lint_qdq(target)
        elif fmt == "tensorrt":
            batch = (1, min(32, max_batch), max_batch)
            export_engine(loaded, target, BuildConfig(batch=batch, timing_cache=timing_cache), opset=opset)
        elif fmt == "torchscript":
            export_torchscript(loaded, target)
        else:
            export_program(
                loaded, target, dynamic_batch=static_batch is None, example_batch=static_batch or 2
            )
    result = {
        "artifact": str(target),
        "sidecar": str(sidecar_path(target)),
        "format": fmt,
        "quantized": bool(loaded.extra.get("quant_recipe")),
        "lint": lint.to_dict() if lint is not None else None,
    }
    if as_json:
        print_json(result)
        return
    kind = "Q/DQ INT8" if result["quantized"] else "FP32"
    out_console.print(f"wrote {escape(str(target))} ({fmt}, {kind}) and {escape(sidecar_path(target).name)}")
    if lint is not None and lint.violations:
        err_console.print(
            f"TensorRT Q/DQ check: {len(lint.errors)} error(s), {len(lint.warnings)} warning(s); "
            f"run `dctq check {escape(str(target))}` for details",
            highlight=False,
        )


def register(app: typer.Typer) -> None:
    """Add the `export` command to `app`."""
    app.command(name="export")(export_command)
