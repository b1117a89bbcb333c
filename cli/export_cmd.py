"""`dctq export CKPT --format onnx|torchscript|program|tensorrt|triton [--out PATH]`: a checkpoint to a deployable
file (`dctq export model.onnx --format tensorrt`: an engine from a Q/DQ ONNX file)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ..deploy.export.formats import export_artifact
from .common import err_console, out_console, print_json, user_errors
from .options import JsonResult


def export_command(
    ctx: typer.Context,
    checkpoint: Annotated[
        Path,
        typer.Argument(
            help="A dctq checkpoint (.pt), float or quantized; or, with --format tensorrt, a Q/DQ .onnx file "
            "(from `dctq export --format onnx`) to build the engine from.",
            show_default=False,
        ),
    ],
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            # escape: typer renders help as Rich markup, where [tensorrt] is a tag and vanishes.
            help=escape(
                "onnx (FP32, or Q/DQ INT8 for TensorRT), torchscript (.ts, torch.jit.trace), program "
                "(.pt2, torch.export) or tensorrt (.engine: a strongly typed TensorRT 11 plan built from the "
                "Q/DQ ONNX, which is written beside it; needs `pip install 'dctq[tensorrt]'` and a GPU) or "
                "triton (a Triton Inference Server model repository folder: clients send JPEG bytes and get "
                "labels; the checkpoint's .engine is served too when it exists)."
            ),
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
        int,
        typer.Option(
            help="tensorrt: largest batch of the optimization profile (min 1, opt 32); triton: max_batch_size."
        ),
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
    low_bit: Annotated[
        bool,
        typer.Option(
            "--low-bit",
            help="ONNX: export a model quantized below 8 bits on its trained grid (Clip + int8/uint8 Q/DQ; "
            "ONNX Runtime computes it exactly, TensorRT takes INT8 models only).",
        ),
    ] = False,
    as_json: JsonResult = False,
) -> None:
    """Export a checkpoint to ONNX, TorchScript, a torch.export program or a TensorRT engine, with a JSON
    sidecar; or build a TensorRT engine from a Q/DQ ONNX file.

    An autoencoder (dq_ae, dq_ae_cpu) exports to two ONNX graphs, OUT's stem + .encoder.onnx (image -> codes,
    nearest code as ArgMin + Gather) and + .decoder.onnx (codes -> pixels and the head's output).

    Quantized ONNX graphs are checked against TensorRT's Q/DQ rules (as `dctq check` does) and the
    summary printed; the export itself succeeds either way.
    """
    with user_errors(ctx):
        result = export_artifact(
            checkpoint,
            fmt,
            out,
            opset=opset,
            static_batch=static_batch,
            max_batch=max_batch,
            timing_cache=timing_cache,
            dynamo=False if legacy else None,
            low_bit=low_bit,
        )
    if as_json:
        print_json(result.to_dict())
        return
    kind = "Q/DQ INT8" if result.quantized else "FP32"
    if result.parts:
        encoder, decoder = result.parts
        out_console.print(
            f"wrote the autoencoder's encoder {escape(str(encoder))} and decoder {escape(str(decoder))} "
            f"({fmt}, {kind}), each with its JSON sidecar"
        )
        return
    out_console.print(
        f"wrote {escape(str(result.artifact))} ({fmt}, {kind}) and {escape(result.sidecar.name)}"
    )
    lint = result.lint
    if lint is not None and lint.violations:
        err_console.print(
            f"TensorRT Q/DQ check: {len(lint.errors)} error(s), {len(lint.warnings)} warning(s); "
            f"run `dctq check {escape(str(result.artifact))}` for details",
            highlight=False,
        )


def register(app: typer.Typer) -> None:
    """Add the `export` command to `app`."""
    app.command(name="export")(export_command)
