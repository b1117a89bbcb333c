"""`dctq demo`: the whole pipeline on a built-in toy data set, in a minute or two on a CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..common.files import check_output_dir
from .common import err_console, out_console, print_json, user_errors
from .demo_pipeline import run_demo
from .options import JsonReport


def demo_command(
    ctx: typer.Context,
    out: Annotated[
        Path,
        typer.Option(
            help="Folder for the toy data, checkpoints, ONNX file and report (must not hold a demo)."
        ),
    ] = Path("dctq-demo"),
    epochs: Annotated[int, typer.Option(help="Training epochs of the toy DCT model.")] = 15,
    per_class: Annotated[int, typer.Option(help="Toy JPEGs per class (4 classes, 32x32).")] = 200,
    seed: Annotated[int, typer.Option(help="Seed of the data, weights and calibration subset.")] = 0,
    as_json: JsonReport = False,
) -> None:
    """Run every stage on procedural 32x32 JPEGs: train a DCT-input net, evaluate it per JPEG quality,
    INT8 PTQ, export Q/DQ ONNX, lint it against TensorRT's rules, run it in ONNX Runtime, profile it."""

    def stage(name: str) -> None:
        if not as_json:
            err_console.print(f"[bold]demo:[/] {name}")

    with user_errors(ctx):
        check_output_dir(out, "--out")
        report = run_demo(out, epochs=epochs, per_class=per_class, seed=seed, stage=stage)
    if as_json:
        print_json(report.to_dict())
        return
    table = Table(title=f"dctq demo ({out})")
    table.add_column("model")
    for row in report.fp32.rows:
        table.add_column(f"top-1 q{row.quality}", justify="right")
    for name, rep in (
        ("FP32 (torch)", report.fp32),
        ("INT8 fake-quant (torch)", report.int8_torch),
        ("INT8 Q/DQ ONNX (ONNX Runtime)", report.int8_ort),
    ):
        table.add_row(name, *(f"{100 * r.top1:.1f}%" for r in rep.rows))
    out_console.print(table)
    out_console.print(
        f"TensorRT Q/DQ rules: {report.lint_errors} error(s), {report.lint_warnings} warning(s) in {report.onnx}"
    )
    for name, prof in (("FP32", report.fp32_ort_profile), ("INT8", report.ort_profile)):
        for row in prof.rows if prof is not None else ():
            out_console.print(
                f"ONNX Runtime {name}, batch {row.batch}: p50 {row.p50_ms:.3f} ms, {row.throughput:.0f} images/s"
            )
    out_console.print(f"`dctq report {out}` renders the run as one Markdown page with its plots")


def register(app: typer.Typer) -> None:
    """Add the `demo` command to `app`."""
    app.command(name="demo")(demo_command)
