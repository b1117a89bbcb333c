"""`dctq profile ARTIFACT [--backend ort|torch] [--batch 1,8,32] [--end-to-end --data DIR] [--json] [--plot PNG]`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ..common.errors import DctqError
from ..deploy.profiling.latency import plot_profile, profile
from .common import err_console, out_console, print_json, user_errors
from .options import JsonReport, parse_batches


def profile_command(
    ctx: typer.Context,
    artifact: Annotated[
        Path, typer.Argument(help="A .pt, .onnx, .ts, .pt2 or .engine artifact.", show_default=False)
    ],
    backend: Annotated[
        str | None, typer.Option(help="ort, torch or tensorrt (default: by artifact type).")
    ] = None,
    batch: Annotated[str, typer.Option("--batch", help="Comma-separated batch sizes.")] = "1,8,32",
    warmup: Annotated[int, typer.Option(help="Untimed calls per batch size.")] = 5,
    iters: Annotated[int, typer.Option(help="Timed calls per batch size.")] = 50,
    end_to_end: Annotated[
        bool, typer.Option("--end-to-end", help="Time reading the JPEG files too (needs --data).")
    ] = False,
    data: Annotated[
        Path | None, typer.Option(help="Folder of JPEGs for --end-to-end (searched recursively).")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda (torch/tensorrt backends).")] = "auto",
    threads: Annotated[
        int | None, typer.Option(help="ONNX Runtime intra-op threads (default: ORT's).")
    ] = None,
    size: Annotated[
        int | None,
        typer.Option(
            help="SR models: side of the LR input images timed (default: the model's stated size, 64)."
        ),
    ] = None,
    as_json: JsonReport = False,
    plot: Annotated[
        Path | None, typer.Option(help="Write a PNG of latency and throughput against batch size.")
    ] = None,
) -> None:
    """Latency percentiles (p50/p90/p99), throughput and peak memory of an artifact per batch size."""
    with user_errors(ctx):
        batches = parse_batches(batch)
        if end_to_end and data is None:
            raise DctqError("--end-to-end needs --data DIR (a folder of JPEG files)")
        options = {"threads": threads} if threads is not None else {}
        report = profile(
            artifact,
            backend,
            batches,
            warmup=warmup,
            iters=iters,
            end_to_end_data=data if end_to_end else None,
            device=device,
            input_size=size,
            **options,
        )
        if plot is not None:
            plot_profile(report, plot)
    if as_json:
        print_json(report.to_dict())
    else:
        mode = "end to end (JPEG read + run)" if report.end_to_end else "model only"
        if report.input_shape is not None:
            mode += f", input {'x'.join(map(str, report.input_shape))} per image"
        table = Table(
            title=f"{escape(str(artifact))} on {report.backend} ({report.device}), {mode}",
            title_justify="left",
        )
        for col in ("batch", "p50 ms", "p90 ms", "p99 ms", "img/s", "peak MB", "+MB"):
            table.add_column(col, justify="right")
        for r in report.rows:
            table.add_row(
                str(r.batch),
                f"{r.p50_ms:.3f}",
                f"{r.p90_ms:.3f}",
                f"{r.p99_ms:.3f}",
                f"{r.throughput:.1f}",
                "-" if r.peak_mem_mb is None else f"{r.peak_mem_mb:.1f}",
                "-" if r.peak_rss_delta_mb is None else f"{r.peak_rss_delta_mb:.1f}",
            )
        out_console.print(table)
    if plot is not None and not as_json:
        err_console.print(f"wrote {escape(str(plot))}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the `profile` command to `app`."""
    app.command(name="profile")(profile_command)
