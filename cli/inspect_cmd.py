"""`dctq inspect FILE...`: what JPEG files hold, as the coefficient reader sees them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.columns import Columns
from rich.markup import escape
from rich.table import Table

from ..common.errors import DctqError, NotAJpegError
from ..jpeg.decoders import BACKENDS, available_backends
from ..jpeg.inspect import InspectReport, inspect_jpeg
from .common import cli_state, err_console, out_console, print_json, to_jsonable


def _format_quality(quality: int | None, fit_error: float) -> str:
    """Short form for the summary table: exact, approximate (~) or not an IJG table at all."""
    if quality is None:
        return "not IJG"
    return str(quality) if fit_error == 0.0 else f"~{quality}"


def _describe_quality(quality: int | None, fit_error: float) -> str:
    if quality is None:
        return (
            f"not IJG: the closest libjpeg tables differ by {100 * fit_error:.0f}% on average "
            "(another encoder's own tables)"
        )
    if fit_error == 0.0:
        return f"{quality} (exactly libjpeg's tables at this quality)"
    return f"~{quality} (libjpeg's tables at this quality, off by {100 * fit_error:.1f}% on average)"


def _format_share(share: float | None) -> str:
    return "-" if share is None else f"{100 * share:.1f}"


def _summary_table(reports: list[InspectReport]) -> Table:
    table = Table(
        title="JPEG files",
        title_justify="left",
        caption="nz: % of the coefficients that are not 0, in the blocks covering the image",
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        collapse_padding=True,
        pad_edge=False,
    )
    # Numbers never wrap; the file name comes last and folds into whatever width is left.
    for header in ("bytes", "WxH"):
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("layout", no_wrap=True)
    table.add_column("blocks", justify="right", no_wrap=True)
    table.add_column("quality", justify="right", no_wrap=True)
    for component in ("Y", "Cb", "Cr"):
        table.add_column(f"nz {component}", justify="right", no_wrap=True)
    table.add_column("file", overflow="fold", ratio=1)
    for r in reports:
        nz = r.nonzero_overall
        table.add_row(
            str(r.file_size),
            f"{r.width}x{r.height}",
            r.subsampling + (" prog" if r.progressive else ""),
            f"{r.block_grid[0]}x{r.block_grid[1]}",
            _format_quality(r.quality, r.quality_fit_error),
            *(_format_share(nz[c]) for c in ("y", "cb", "cr")),
            r.path,
        )
    return table


def _grid(title: str, values: list[list[str]]) -> Table:
    """An 8x8 grid: rows u (vertical frequency), columns v (horizontal frequency)."""
    table = Table(title=title, show_header=True, header_style="dim", pad_edge=False, box=None)
    table.add_column("u\\v", style="dim", justify="right")
    for v in range(8):
        table.add_column(str(v), justify="right")
    for u, row in enumerate(values):
        table.add_row(str(u), *row)
    return table


def _print_details(report: InspectReport) -> None:
    names = ("Y", "Cb", "Cr") if report.subsampling != "gray" else ("Y",)
    qgrids = [
        _grid(f"quant table {name}", [[str(v) for v in row] for row in report.qtables[c]])
        for c, name in enumerate(names)
    ]
    y_share = report.nonzero_share["y"]
    share_rows = [[f"{100 * y_share[8 * u + v]:.0f}" for v in range(8)] for u in range(8)]
    out_console.print(f"\n[bold]{escape(report.path)}[/]", highlight=False, soft_wrap=True)
    out_console.print(
        f"IJG quality: {_describe_quality(report.quality, report.quality_fit_error)}", highlight=False
    )
    out_console.print(Columns(qgrids, padding=(0, 3)))
    out_console.print(_grid("Y non-zero, % of blocks", share_rows))


def _model_file_message(path: Path) -> str | None:
    """The message for a model artifact given to inspect (its suffix says so), else None."""
    from ..deploy.artifact import KINDS  # only on this error path: deploy imports torch

    kind = KINDS.get(path.suffix.lower())
    if kind is None:
        return None
    hint = (
        "`dctq check` lints an ONNX graph, `dctq predict` runs a model"
        if kind == "onnx"
        else "`dctq predict` runs it"
    )
    return f"{path}: a model file ({kind}), not a JPEG; `dctq inspect` reads JPEG files ({hint})"


def _check_backend(value: str) -> str:
    if value == "auto":
        return value
    if value not in BACKENDS:
        raise typer.BadParameter(f"unknown backend {value!r}; choose one of: auto, {', '.join(BACKENDS)}")
    available = available_backends()
    if value not in available:
        raise typer.BadParameter(
            f"backend {value!r} is not available here (available: {', '.join(available) or 'none'}); "
            "use auto, or see `dctq.jpeg.reader` for how to build it"
        )
    return value


def inspect_command(
    ctx: typer.Context,
    files: Annotated[
        list[Path],
        typer.Argument(help="JPEG files to inspect.", show_default=False),
    ],
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print a JSON list on stdout instead of tables: one object per file with every field "
            'of the report, or {"path", "error"} for a file that could not be read.',
        ),
    ] = False,
    tables: Annotated[
        bool,
        typer.Option(
            "--tables",
            help="Show the quant tables and the Y non-zero shares as 8x8 grids for every file "
            "(always shown when a single file is given).",
        ),
    ] = False,
    backend: Annotated[
        str,
        typer.Option(
            "--backend",
            help="Coefficient reader: 'turbo' (libjpeg-turbo C extension), 'jpeglib' (the reference), "
            "or 'auto' for the fastest available. Both give identical coefficients.",
            callback=_check_backend,
        ),
    ] = "auto",
) -> None:
    """Show size, chroma layout, block grid, quant tables, IJG quality and non-zero shares of JPEGs.

    One summary row per file. With one file, or --tables, its quant tables and Y non-zero grid follow.

    Every file is tried; each unreadable one gets one line on stderr and the exit code is then 1.
    """
    debug = cli_state(ctx).debug
    reports: list[InspectReport] = []
    entries: list[dict] = []
    failed = 0
    for path in files:
        try:
            report = inspect_jpeg(path, backend=backend)
        except DctqError as exc:
            if debug:
                raise
            failed += 1
            message = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
            if isinstance(exc, NotAJpegError):
                message = _model_file_message(path) or message
            entries.append({"path": str(path), "error": message})
            err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
            continue
        reports.append(report)
        entries.append(to_jsonable(report))

    if as_json:
        print_json(entries)
    elif reports:
        out_console.print(_summary_table(reports))
        if tables or len(files) == 1:
            for report in reports:
                _print_details(report)
    if failed:
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    """Add the inspect command to `app`."""
    app.command(name="inspect")(inspect_command)
