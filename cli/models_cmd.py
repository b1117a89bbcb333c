"""`dctq models [PATTERN] [--json]`: the registered architectures with their size and cost."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from ..models.flops import summarize_models
from .common import out_console, print_json, user_errors


def models_command(
    ctx: typer.Context,
    pattern: Annotated[
        str, typer.Argument(help="Shell-style name filter, e.g. 'dct_*' (quote it in the shell).")
    ] = "*",
    json_out: Annotated[
        bool, typer.Option("--json", help="Print JSON on stdout instead of a table.")
    ] = False,
    long: Annotated[
        bool, typer.Option("--long", "-l", help="Add each model's description to the table.")
    ] = False,
) -> None:
    """List registered models: task (classify, sr, autoencode), input kind and size, parameters, GMACs and
    GFLOPs (= 2 x MACs) of one image at the model's input size (SR models: the LR input side)."""
    with user_errors(ctx):
        rows = summarize_models(pattern)
    if json_out:
        print_json([r.to_dict() for r in rows])
        return
    if not rows:
        out_console.print(f"no model matches {pattern!r}")
        return
    table = Table(
        title="dctq models",
        caption="MACs/FLOPs: conv + linear layers, batch 1, at the input size (SR: LR side); FLOPs = 2 x MACs",
    )
    table.add_column("name", no_wrap=True)
    tasks = any(r.task != "classify" for r in rows)  # the column only where the rows differ from classifiers
    if tasks:
        table.add_column("task", no_wrap=True)
    table.add_column("input", no_wrap=True)
    for col in ("size", "params (M)", "GMACs", "GFLOPs"):
        table.add_column(col, justify="right", no_wrap=True)
    if long:
        table.add_column("description", overflow="fold", min_width=30)
    for r in rows:
        cells = [
            r.name,
            *([r.task] if tasks else []),
            r.input_kind,
            str(r.input_size),
            f"{r.params / 1e6:.3f}",
        ]
        cells += [f"{r.macs / 1e9:.4f}", f"{r.flops / 1e9:.4f}"] + ([r.description] if long else [])
        table.add_row(*cells)
    out_console.print(table)


def register(app: typer.Typer) -> None:
    """Add the `models` command to `app`."""
    app.command(name="models")(models_command)
