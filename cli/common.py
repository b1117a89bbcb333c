"""What every command shares: the stderr console, progress bars, --help defaults, JSON output, and
DctqError -> exit code 1."""

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
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

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


def make_progress(enabled: bool = True, *, detail: bool = True, transient: bool = False) -> Progress:
    """Bars on stderr: description, bar, done/total, then with `detail` elapsed, remaining and the task's
    `stats` field (so every task of a detailed Progress needs `stats=`). Without a terminal (logs, CI)
    or with `enabled` False it draws nothing; commands print their per-epoch / per-batch lines anyway.
    """
    columns: list[ProgressColumn] = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    if detail:
        columns += [TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[stats]}")]
    return Progress(
        *columns,
        console=err_console,
        transient=transient,
        disable=not (enabled and err_console.is_terminal),
    )


class Bar:
    """One bar of a detailed make_progress, added on first use. The inner bar of a two-level view (the
    steps of an epoch, the iterations of a batch) is restarted for each outer index, so finished bars
    do not pile up."""

    def __init__(self, progress: Progress, description: str = "") -> None:
        self.progress = progress
        self.description = description
        self.task: TaskID | None = None
        self.key: Any = None

    def ensure(self, total: float | None = None, completed: float = 0) -> TaskID:
        """Add the bar at `completed` of `total` (None: unknown) unless it is there already; its task id."""
        if self.task is None:
            self.task = self.progress.add_task(self.description, total=total, completed=completed, stats="")
        return self.task

    def update(self, completed: float, *, total: float | None = None, stats: str | None = None) -> None:
        """Move the bar to `completed` (of `total` when given) with `stats` (loss, rate...) beside it."""
        task = self.ensure(total, completed)
        fields = {} if stats is None else {"stats": stats}
        self.progress.update(task, completed=completed, total=total, **fields)

    def restart(self, description: str, total: float | None) -> None:
        """A fresh bar at 0 of `total` in place of this one."""
        if self.task is not None:
            self.progress.remove_task(self.task)
            self.task = None
        self.description = description
        self.ensure(total)

    def follow(self, key: Any, description: str, total: float | None) -> None:
        """restart() when `key` (the outer index: batch, epoch) differs from the last one followed."""
        if self.task is None or key != self.key:
            self.restart(description, total)
            self.key = key


def default_help(value: Any) -> str:
    """' [default: VALUE]' for the end of an option's help text."""
    # Sequences as the comma list the option parses (`--milestones 60,120`), not a Python tuple.
    if isinstance(value, list | tuple):
        value = ",".join(str(v) for v in value)
    # Escaped: typer renders help as Rich markup, where a bare [...] is a tag and vanishes.
    return escape(f" [default: {value}]")


def field_default(dataclass_type: type, name: str) -> Any:
    """The default of field `name` of a config dataclass, so --help shows the library's own defaults.

    Raises KeyError for an unknown field or one without a default (a mistake in the CLI code).
    """
    for f in dataclasses.fields(dataclass_type):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
            raise KeyError(f"{dataclass_type.__name__}.{name} has no default")
    raise KeyError(f"{dataclass_type.__name__} has no field {name!r}")


def field_default_help(dataclass_type: type, name: str) -> str:
    """default_help of field `name`'s default in `dataclass_type`, e.g. ' [default: 30]'."""
    return default_help(field_default(dataclass_type, name))
