"""`dctq env [--json]`: which JPEG reader, torch/CUDA, ONNX, ONNX Runtime and TensorRT this dctq found."""

from __future__ import annotations

import typer
from rich.markup import escape

from ..deploy.environment import READER_FIX, describe_environment
from .common import out_console, print_json, summary_table, user_errors
from .options import JsonReport

READER_NAMES = {
    "turbo": "fast: the libjpeg-turbo C extension (dctq.jpeg._turbo)",
    "jpeglib": "slow: the jpeglib package, 10-40x slower (the C extension is not built)",
    "none": "none: neither the C extension nor jpeglib imports",
}


def env_command(ctx: typer.Context, as_json: JsonReport = False) -> None:
    """Show what this installation found: the JPEG reader it reads with, torch and CUDA, ONNX, ONNX
    Runtime and TensorRT, with how to install what is missing."""
    with user_errors(ctx):
        env = describe_environment()
    if as_json:
        print_json(env.to_dict())
        return
    table = summary_table(f"dctq {env.dctq}")
    table.add_row("python", f"{env.python} ({escape(env.platform)})")
    reader = READER_NAMES[env.jpeg_reader] + ("" if env.fast_reader else f"; {READER_FIX}")
    table.add_row("JPEG reader", escape(reader))
    cuda = f"yes: {', '.join(env.gpus)}" if env.cuda else "no device"
    table.add_row("torch", f"{env.torch} (CUDA build {env.torch_cuda_build or 'none'}; CUDA: {escape(cuda)})")
    for package in env.packages:
        version = package.version or "not installed"
        table.add_row(package.name, escape(version + (f"; {package.note}" if package.note else "")))
    out_console.print(table)


def register(app: typer.Typer) -> None:
    """Add the `env` command to `app`."""
    app.command(name="env")(env_command)
