"""`dctq report RUN_DIR [--out report.md] [--plot-format png|svg|pdf]`: one Markdown page of a run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ..deploy.report import render_report
from .common import out_console, print_json, user_errors
from .options import JsonResult


def report_command(
    ctx: typer.Context,
    run_dir: Annotated[
        Path,
        typer.Argument(
            help="A run folder: a `dctq train --out` folder, the folder of `dctq demo`, or any folder holding "
            "metrics.csv records, .onnx graphs and *.profile.json profiles.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="The Markdown page (default RUN_DIR/report.md); its plots go into the folder beside it "
            "named after it (report.md -> report/).",
        ),
    ] = None,
    plot_format: Annotated[str, typer.Option(help="Format of the plots: png, svg or pdf.")] = "png",
    as_json: JsonResult = False,
) -> None:
    """Render a run folder as one Markdown page: training curves and tables, accuracy per JPEG quality,
    the TensorRT Q/DQ check of every ONNX graph, latency profiles, with their plots."""
    with user_errors(ctx):
        report = render_report(run_dir, out, plot_format=plot_format)
    if as_json:
        print_json(report.to_dict())
        return
    out_console.print(
        f"wrote {escape(str(report.page))} ({len(report.records)} records, {len(report.graphs)} graphs, "
        f"{len(report.profiles)} profiles, {len(report.plots)} plots)",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    """Add the `report` command to `app`."""
    app.command(name="report")(report_command)
