"""What every command shares: the consoles (results on stdout, messages on stderr), the state of the
`dctq` callback, DctqError -> exit code 1, and JSON output. Option parsing and --help defaults are in
options.py, progress bars in progress.py."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
from collections.abc import Iterator
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..common.errors import DctqError

err_console = Console(stderr=True)
out_console = Console()


@dataclasses.dataclass
class CliState:
    """Options of the top-level `dctq` callback, carried to every command on ctx.obj."""

    debug: bool = False


def cli_state(ctx: typer.Context) -> CliState:
    """The CliState of this invocation (a default one when a command is invoked on its own)."""
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
    return root.obj


@contextlib.contextmanager
def user_errors(ctx: typer.Context) -> Iterator[None]:
    """Turn a DctqError into one line on stderr and exit code 1 (a traceback only with --debug)."""
    try:
        yield
    except DctqError as exc:
        if cli_state(ctx).debug:
            raise
        # escape: messages hold brackets (pip extras like dctq[tensorrt]) that rich would eat as markup.
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=1) from None


def summary_table(title: str) -> Table:
    """The what / value table a long command prints when it is done: add one row per fact."""
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("what", style="dim")
    table.add_column("value")
    return table


def to_jsonable(obj: Any) -> Any:
    """Dataclasses, paths and numpy values as plain JSON types."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, int | float | str | bool) or obj is None:
        return obj
    return str(obj)


def json_text(obj: Any) -> str:
    """`obj` as indented JSON text (see to_jsonable), newline-terminated."""
    return json.dumps(to_jsonable(obj), indent=2) + "\n"


def print_json(obj: Any) -> None:
    """Write `obj` as JSON on stdout, for scripts."""
    sys.stdout.write(json_text(obj))
