"""`dctq compare A B [--data DIR] [--layers]`: two artifacts of one model on the same inputs, per output
(SQNR, cosine, max |diff|, top-1 agreement) against tolerances, exit code 1 when one is broken; with
--layers the same per layer, worst first (deploy/compare)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ..calibration.train.config import saved_val_fraction
from ..common.files import check_output_file, write_text_atomic
from ..deploy.artifact import load_artifact
from ..deploy.compare.metrics import TensorComparison, Tolerances
from ..deploy.compare.run import CompareReport, compare_artifacts
from .common import err_console, json_text, out_console, print_json, user_errors
from .options import JsonReport, TrustCode
from .progress import Bar, make_progress


def _db(value: float) -> str:
    return "exact" if math.isinf(value) and value > 0 else f"{value:.2f}"


def _table(title: str, rows: tuple[TensorComparison, ...], *, status: bool) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("tensor", overflow="fold")
    for name in ("SQNR dB", "cosine min", "cosine mean", "max |diff|", "mean |diff|", "top-1 agree"):
        table.add_column(name, justify="right")
    if status:
        table.add_column("result")
    for r in rows:
        cells = [
            escape(r.name),
            _db(r.sqnr_db),
            f"{r.cosine_min:.5f}",
            f"{r.cosine_mean:.5f}",
            f"{r.max_abs_diff:.4g}",
            f"{r.mean_abs_diff:.4g}",
            "-" if r.agreement is None else f"{100 * r.agreement:.2f}%",
        ]
        if status:
            cells.append("[green]pass[/]" if r.passed else f"[red]FAIL[/] {escape('; '.join(r.failures))}")
        table.add_row(*cells)
    return table


def _print(report: CompareReport, top: int) -> None:
    title = (
        f"{escape(report.a)} ({report.backends[0]}) vs {escape(report.b)} ({report.backends[1]}) "
        f"on {escape(report.data)}"
    )
    out_console.print(_table(title, report.outputs, status=True))
    if report.layers:
        shown = report.layers[:top]
        more = f" (worst {len(shown)} of {len(report.layers)})" if len(shown) < len(report.layers) else ""
        out_console.print(_table(f"layers, worst SQNR first{more}", shown, status=False))
    if report.unmatched:
        out_console.print(f"layers only one side has: {escape(', '.join(report.unmatched))}", style="dim")


def compare_command(
    ctx: typer.Context,
    a: Annotated[
        Path,
        typer.Argument(help="Reference artifact: .pt (float or quantized), .onnx, .ts, .pt2 or .engine."),
    ],
    b: Annotated[
        Path, typer.Argument(help="Artifact compared with A (same model: same input kind and size).")
    ],
    data: Annotated[
        str | None,
        typer.Option(
            help=escape(
                "Inputs: 'cifar10' (its validation split), a folder of JPEGs (recursive) or one JPEG "
                "[default: procedural demo images at the model's size]."
            ),
            show_default=False,
        ),
    ] = None,
    images: Annotated[int, typer.Option(help="Images compared (the first of --data, sorted).")] = 64,
    layers: Annotated[
        bool,
        typer.Option(
            "--layers",
            help="Also compare every layer both have (PyTorch hooks; ONNX graphs with module outputs marked), worst first.",
        ),
    ] = False,
    top: Annotated[int, typer.Option(help="Layers shown in the table (--json lists all).")] = 25,
    backend_a: Annotated[
        str | None,
        typer.Option(
            help=escape("Runtime of A: torch, ort or tensorrt [default: by file type]."), show_default=False
        ),
    ] = None,
    backend_b: Annotated[
        str | None,
        typer.Option(
            help=escape("Runtime of B: torch, ort or tensorrt [default: by file type]."), show_default=False
        ),
    ] = None,
    min_sqnr: Annotated[
        float | None,
        typer.Option(help="Fail when an output's SQNR (dB, A as signal) is lower.", show_default=False),
    ] = None,
    min_cosine: Annotated[
        float | None,
        typer.Option(help="Fail when any image's output cosine similarity is lower.", show_default=False),
    ] = None,
    max_diff: Annotated[
        float | None, typer.Option(help="Fail when an output's max |A - B| is larger.", show_default=False)
    ] = None,
    min_agreement: Annotated[
        float | None,
        typer.Option(
            help="Fail when top-1 agreement (percent of images) is lower, e.g. 99.", show_default=False
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Images per run.")] = 16,
    device: Annotated[
        str, typer.Option(help="'auto', 'cpu' or 'cuda' (torch and tensorrt backends).")
    ] = "auto",
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Also write the JSON report to this file.", show_default=False),
    ] = None,
    as_json: JsonReport = False,
    trust_code: TrustCode = False,
) -> None:
    """Compare two artifacts of one model on the same inputs; exit code 1 when a tolerance is broken."""
    with user_errors(ctx):
        tolerances = Tolerances(
            min_sqnr_db=min_sqnr,
            min_cosine=min_cosine,
            max_abs_diff=max_diff,
            min_agreement=None if min_agreement is None else min_agreement / 100,
        )
        if out is not None:
            check_output_file(out, "--out", inputs=(a, b))
        first = load_artifact(a, trust_code=trust_code)
        with make_progress(not as_json, transient=True) as progress:
            bar = Bar(progress, "batches")
            report = compare_artifacts(
                first,
                b,
                data=data,
                images=images,
                batch_size=batch_size,
                layers=layers,
                tolerances=tolerances,
                backends=(backend_a, backend_b),
                device=device,
                val_fraction=saved_val_fraction(first.extra),
                progress=lambda done, total: bar.update(done, total=total),
                trust_code=trust_code,
            )
    if out is not None:
        write_text_atomic(out, json_text(report.to_dict()))
    if as_json:
        print_json(report.to_dict())
    else:
        _print(report, top)
    if not report.passed:
        failed = [f"{o.name}: {'; '.join(o.failures)}" for o in report.outputs if not o.passed]
        err_console.print(f"[bold red]compare failed:[/] {escape(' | '.join(failed))}", highlight=False)
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    """Add the `compare` command to `app`."""
    app.command(name="compare")(compare_command)
