"""`dctq profile ARTIFACT... [--backend ort|torch] [--batch 1,8,32] [--end-to-end --data DIR] [--json] [--out JSON]
[--plot FILE]`: several artifacts are profiled in turn and overlaid in one plot."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ..common.errors import DctqError
from ..common.files import check_output_file, write_text_atomic
from ..deploy.profiling.latency import ProfileReport, profile
from ..deploy.profiling.plot import plot_format, plot_profiles
from .common import err_console, json_text, out_console, print_json, user_errors
from .options import JsonReport, TrustCode, parse_batches


def profile_command(
    ctx: typer.Context,
    artifacts: Annotated[
        list[Path],
        typer.Argument(
            help="One or more .pt, .onnx, .ts, .pt2 or .engine artifacts (several: profiled in turn, one plot).",
            show_default=False,
        ),
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
        int | None,
        typer.Option(
            help="CPU threads: ONNX Runtime's intra-op threads, or torch's (default: the runtime's own)."
        ),
    ] = None,
    size: Annotated[
        int | None,
        typer.Option(
            help="SR models: side of the LR input images timed (default: the model's stated size, 64)."
        ),
    ] = None,
    as_json: JsonReport = False,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Also write the JSON report to this file (atomically), e.g. RUN_DIR/int8.profile.json for "
            "`dctq report`.",
            show_default=False,
        ),
    ] = None,
    trust_code: TrustCode = False,
    plot: Annotated[
        Path | None,
        typer.Option(
            help="Plot latency (p50 line, p90-p99 band) and throughput against batch size, every artifact "
            "overlaid; the format follows the extension: .png, .svg or .pdf (matplotlib when installed).",
        ),
    ] = None,
) -> None:
    """Latency percentiles (p50/p90/p99), throughput and memory of artifacts per batch size.

    "+MB" is what the timed calls add to the process's peak memory; "process MB" is the whole
    process's peak (Python, torch, the runtime and the model included). A quantized .pt (or .ts/.pt2)
    on the torch backend runs fake-quant ops in float: its timings are marked simulated, not INT8 speed.
    """
    with user_errors(ctx):
        batches = parse_batches(batch)
        if end_to_end and data is None:
            raise DctqError("--end-to-end needs --data DIR (a folder of JPEG files)")
        if plot is not None:
            check_output_file(plot, "--plot", inputs=tuple(artifacts))
            plot_format(plot)  # refuse a bad extension before the (long) measurement
        if out is not None:
            check_output_file(out, "--out", inputs=tuple(artifacts))
        options = {"threads": threads} if threads is not None else {}
        reports = [
            profile(
                artifact,
                backend,
                batches,
                warmup=warmup,
                iters=iters,
                end_to_end_data=data if end_to_end else None,
                device=device,
                trust_code=trust_code,
                input_size=size,
                **options,
            )
            for artifact in artifacts
        ]
        result = reports[0].to_dict() if len(reports) == 1 else [r.to_dict() for r in reports]
        if out is not None:
            write_text_atomic(out, json_text(result))
        if plot is not None:
            plot_profiles(reports, plot)
    if as_json:
        print_json(result)
    else:
        for report in reports:
            out_console.print(_table(report))
    for report in reports:
        if report.simulated_int8:
            err_console.print(
                f"note: {escape(report.artifact)} is quantized, but the torch backend runs its fake-quant ops "
                "in float: these timings are not INT8 speed; for that, export it (`dctq export --format onnx`, "
                "then --backend ort) or build a TensorRT engine",
                highlight=False,
                soft_wrap=True,
            )
    if plot is not None and not as_json:
        err_console.print(f"wrote {escape(str(plot))}", highlight=False)


def _table(report: ProfileReport) -> Table:
    mode = "end to end (JPEG read + run)" if report.end_to_end else "model only"
    if report.input_shape is not None:
        mode += f", input {'x'.join(map(str, report.input_shape))} per image"
    simulated = ", SIMULATED INT8 (fake-quant in float)" if report.simulated_int8 else ""
    table = Table(
        title=f"{escape(report.artifact)} on {report.backend} ({report.device}), {mode}{simulated}",
        title_justify="left",
        caption=f"+MB: what the timed calls add; process MB: the whole process's peak ({report.memory_source})",
        caption_justify="left",
    )
    for col in ("batch", "p50 ms", "p90 ms", "p99 ms", "img/s", "+MB", "process MB"):
        table.add_column(col, justify="right")
    for r in report.rows:
        table.add_row(
            str(r.batch),
            f"{r.p50_ms:.3f}",
            f"{r.p90_ms:.3f}",
            f"{r.p99_ms:.3f}",
            f"{r.throughput:.1f}",
            "-" if r.peak_rss_delta_mb is None else f"{r.peak_rss_delta_mb:.1f}",
            "-" if r.peak_mem_mb is None else f"{r.peak_mem_mb:.1f}",
        )
    return table


def register(app: typer.Typer) -> None:
    """Add the `profile` command to `app`."""
    app.command(name="profile")(profile_command)
