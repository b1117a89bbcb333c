"""What every command shares: the consoles (results on stdout, messages on stderr), the state of the
`dctq` callback, DctqError -> exit code 1, and JSON output. Option parsing and --help defaults are in
options.py, progress bars in progress.py."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import re
import sys
from collections.abc import Iterator, Sequence
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from ..common.errors import DctqError, UnreadableFilesError

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


# torch's DataLoader re-raises a worker's exception as the same class with this text before the original
# traceback, whose last line is "module.Class: the original message".
_WORKER_TRACEBACK = "\nOriginal Traceback (most recent call last):"
_QUALIFIED_CLASS = re.compile(r"^[A-Za-z_][\w.]*: ")


def error_line(exc: BaseException) -> str:
    """The one line a user sees for `exc`: its message, the original one for an error re-raised from a
    DataLoader worker (without the worker's traceback), any remaining line breaks joined."""
    text = str(exc)
    if _WORKER_TRACEBACK in text:
        lines = [line for line in text.splitlines() if line.strip()]
        text = _QUALIFIED_CLASS.sub("", lines[-1], count=1)
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def print_error(message: str) -> None:
    """`error: message` on stderr, one line (rich markup in `message` is escaped)."""
    # escape: messages hold brackets (pip extras like dctq[tensorrt]) that rich would eat as markup.
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


@contextlib.contextmanager
def user_errors(ctx: typer.Context) -> Iterator[None]:
    """Turn a DctqError into one line on stderr and exit code 1 (a traceback only with --debug)."""
    try:
        yield
    except DctqError as exc:
        if cli_state(ctx).debug:
            raise
        if isinstance(exc, UnreadableFilesError):  # --bad-files list: the list is what was asked for
            for _, message in exc.files:
                err_console.print(f"  {escape(message)}", highlight=False, soft_wrap=True)
        print_error(error_line(exc))
        raise typer.Exit(code=1) from None
    except OSError as exc:  # the file system failed under the command (no space, a vanished folder...)
        if cli_state(ctx).debug:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print_error(f"{where}{exc.strerror or exc}")
        raise typer.Exit(code=1) from None


BadFiles = Annotated[
    str,
    typer.Option(
        "--bad-files",
        help="Files the JPEG reader refuses: 'stop' (the first one stops the run with its error), 'list' "
        "(read every file first, list all bad ones, exit 1) or 'skip' (read every file first, leave the bad "
        "ones out and say how many).",
    ),
]
"""`--bad-files` of the commands that read a data set (train, evaluate)."""


def report_skipped(skipped: Sequence[tuple[str, str]], total_hint: str = "") -> None:
    """One stderr line saying how many unreadable files `--bad-files skip` left out (none: nothing)."""
    if skipped:
        err_console.print(
            f"[yellow]skipped[/] {len(skipped)} unreadable file(s){total_hint} (--bad-files skip), first: "
            f"{escape(skipped[0][1])}",
            highlight=False,
            soft_wrap=True,
        )


READS_JPEGS = frozenset(
    ("demo", "inspect", "train", "train-meta", "evaluate", "quantize", "predict", "profile")
)
"""Commands that read JPEG files: warned when only the slow reader is there."""


def warn_if_slow_reader(command: str | None) -> None:
    """One warning line on stderr when `command` reads JPEGs and the fast C reader is not built here."""
    if command not in READS_JPEGS:
        return
    from ..jpeg.reader import available_backends

    if "turbo" not in available_backends():
        err_console.print(
            "[yellow]warning:[/] the fast JPEG reader (the dctq.jpeg._turbo C extension) is not built here; "
            "reading with jpeglib, 10-40x slower (`dctq env` says how to build it)",
            highlight=False,
            soft_wrap=True,
        )


# Click's (or typer's vendored Click's) exception classes, wherever this typer takes them from.
_click_errors = sys.modules[typer.BadParameter.__module__]


class OneLineErrors(TyperGroup):
    """The app's command group: usage errors (unknown option or command, missing argument, a value of the
    wrong type) are one line on stderr, exit code 2, instead of Click's usage text and Rich box."""

    def main(  # type: ignore[override]
        self, args: Sequence[str] | None = None, prog_name: str | None = None, *more: Any, **extra: Any
    ) -> Any:
        standalone = extra.pop("standalone_mode", True)
        if not standalone:
            return super().main(args, prog_name, *more, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, *more, standalone_mode=False, **extra)
        except _click_errors.UsageError as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # `dctq` alone: the help was shown already
                sys.exit(exc.exit_code)
            command = exc.ctx.command_path if exc.ctx is not None else (prog_name or "dctq")
            print_error(f"{error_line(exc.format_message())} (see `{command} --help`)")
            sys.exit(exc.exit_code)
        except _click_errors.ClickException as exc:
            print_error(error_line(exc.format_message()))
            sys.exit(exc.exit_code)
        except typer.Abort:
            print_error("aborted")
            sys.exit(1)
        # Without standalone mode Click returns a command's typer.Exit code instead of exiting with it.
        sys.exit(code if isinstance(code, int) else 0)


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
        return to_jsonable(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None  # JSON has no NaN or infinity; Python's bare NaN would make the output invalid JSON
    if isinstance(obj, int | float | str | bool) or obj is None:
        return obj
    return str(obj)


def json_text(obj: Any) -> str:
    """`obj` as indented JSON text (see to_jsonable; NaN and infinities become null), newline-terminated."""
    return json.dumps(to_jsonable(obj), indent=2, allow_nan=False) + "\n"


def print_json(obj: Any) -> None:
    """Write `obj` as JSON on stdout, for scripts (strict JSON: NaN and infinities as null)."""
    sys.stdout.write(json_text(obj))
