"""`dctq predict ARTIFACT IMG... [--backend] [--top-k] [--json]`: classify JPEG files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ..deploy.predict import predict
from .common import err_console, out_console, print_json, user_errors
from .options import TrustCode


def predict_command(
    ctx: typer.Context,
    artifact: Annotated[
        Path,
        typer.Argument(help="A checkpoint (.pt), ONNX (.onnx), TorchScript (.ts), program (.pt2) or engine."),
    ],
    images: Annotated[list[Path], typer.Argument(help="JPEG files.", show_default=False)],
    backend: Annotated[
        str | None,
        typer.Option(
            help="ort, torch or tensorrt (default: ort for .onnx, torch for .pt/.ts/.pt2, tensorrt for .engine)."
        ),
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", help="Classes shown per image.")] = 5,
    batch_size: Annotated[int, typer.Option(help="Images per run.")] = 32,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda (torch/tensorrt backends).")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the predictions as JSON on stdout.")] = False,
    trust_code: TrustCode = False,
) -> None:
    """Predict the classes of JPEG images with any exported model, read straight from their DCT coefficients."""
    with user_errors(ctx):
        predictions = predict(
            artifact,
            images,
            backend=backend,
            top_k=top_k,
            batch_size=batch_size,
            device=device,
            trust_code=trust_code,
        )
    for p in predictions:
        if p.note:
            err_console.print(f"[yellow]warning:[/] {escape(p.note)}", highlight=False, soft_wrap=True)
    if as_json:
        print_json([p.to_dict() for p in predictions])
        return
    table = Table(title=f"{escape(str(artifact))}", title_justify="left")
    table.add_column("image", overflow="fold")
    table.add_column("class")
    table.add_column("p", justify="right")
    shown = min(top_k, max((len(p.top) for p in predictions), default=top_k))
    table.add_column(f"top {shown}", overflow="fold")
    for p in predictions:
        ranked = ", ".join(f"{escape(n)} {v:.3f}" for n, _, v in p.top)
        table.add_row(escape(p.path), escape(p.label), f"{p.probability:.3f}", ranked)
    out_console.print(table)


def register(app: typer.Typer) -> None:
    """Add the `predict` command to `app`."""
    app.command(name="predict")(predict_command)
