"""`dctq check MODEL.onnx [--json]`: TensorRT explicit-quantization rules; exit code 1 on any error."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ..deploy.onnx.lint import lint_qdq
from .common import out_console, print_json, user_errors
from .options import JsonReport


def check_command(
    ctx: typer.Context,
    model: Annotated[Path, typer.Argument(help="An ONNX file (FP32 or Q/DQ).", show_default=False)],
    as_json: JsonReport = False,
    strict: Annotated[bool, typer.Option("--strict", help="Exit with code 1 on warnings too.")] = False,
) -> None:
    """Check an ONNX graph against TensorRT's Q/DQ rules: int8, zero point 0, scale axes, Q/DQ placement,
    opset and operator support. Exits with code 1 when any rule at error level is broken."""
    with user_errors(ctx):
        report = lint_qdq(model)
    failed = not report.ok or (strict and report.warnings)
    if as_json:
        print_json(report.to_dict())
    else:
        summary = (
            f"{escape(str(model))}: opset {report.opset}, {report.nodes} nodes, "
            f"{report.quantize_nodes} Q / {report.dequantize_nodes} DQ: "
            f"{len(report.errors)} error(s), {len(report.warnings)} warning(s)"
        )
        if report.violations:
            table = Table(title=summary, title_justify="left")
            for col in ("severity", "rule", "node", "message"):
                table.add_column(col, overflow="fold")
            for v in report.violations:
                style = "red" if v.severity == "error" else "yellow"
                table.add_row(f"[{style}]{v.severity}[/]", v.rule, escape(v.node), escape(v.message))
            out_console.print(table)
        else:
            out_console.print(f"{summary} [green]ok[/]", highlight=False)
    if failed:
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    """Add the `check` command to `app`."""
    app.command(name="check")(check_command)
