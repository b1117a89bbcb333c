"""The `dctq` command: joins the command groups; every command calls one library function."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from .. import __version__
from ..jpeg.limits import DEFAULT_MAX_PIXELS, MAX_PIXELS_ENV
from .common import CliState, OneLineErrors, warn_if_slow_reader

app = typer.Typer(
    name="dctq",
    cls=OneLineErrors,
    help="PyTorch to INT8 inference engines that read JPEG DCT coefficients directly.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dctq {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show full tracebacks instead of one-line errors.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the dctq version and exit."),
    ] = False,
    max_pixels: Annotated[
        int | None,
        typer.Option(
            "--max-pixels",
            help="Refuse JPEG files whose header declares more pixels than this, before decoding them "
            f"(default {DEFAULT_MAX_PIXELS}, or ${MAX_PIXELS_ENV}; 0: no limit). Every command that reads "
            "images applies it.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """dctq: read JPEG DCT coefficients, train, quantize and deploy models on them."""
    ctx.obj = CliState(debug=debug)
    if max_pixels is not None:
        # The environment carries it to every reader: DataLoader workers and torchrun ranks included.
        os.environ[MAX_PIXELS_ENV] = str(max_pixels)
    warn_if_slow_reader(ctx.invoked_subcommand)


# Each command module adds its commands or group to `app` (one line per module, keep sorted).
from . import (  # noqa: E402
    adapt_bn_cmd,
    check_cmd,
    demo_cmd,
    env_cmd,
    evaluate_cmd,
    export_cmd,
    inspect_cmd,
    models_cmd,
    predict_cmd,
    profile_cmd,
    quantize_cmd,
    report_cmd,
    synthesize_cmd,
    train_cmd,
    train_meta_cmd,
)

for _module in (
    demo_cmd,
    inspect_cmd,
    models_cmd,
    train_cmd,
    train_meta_cmd,
    evaluate_cmd,
    synthesize_cmd,
    quantize_cmd,
    adapt_bn_cmd,
    export_cmd,
    check_cmd,
    predict_cmd,
    profile_cmd,
    env_cmd,
    report_cmd,
):
    _module.register(app)
