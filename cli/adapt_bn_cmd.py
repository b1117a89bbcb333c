"""`dctq adapt-bn CKPT --data DIR|cifar10 --quality Q --out CKPT`: BatchNorm statistics for a deployment quality."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ..calibration.workflow.adapt_bn import adapt_bn_checkpoint
from ..calibration.workflow.plan import PtqData
from ..common.files import check_output_file
from .common import out_console, print_json, user_errors
from .options import JsonResult
from .progress import make_progress


def adapt_bn_command(
    ctx: typer.Context,
    checkpoint: Annotated[
        Path,
        typer.Argument(help="The FP checkpoint (.pt), e.g. best.pt of `dctq train`.", show_default=False),
    ],
    data: Annotated[
        str,
        typer.Option(
            "--data",
            help="The images to measure on: the run's data ('cifar10' or an ImageFolder of JPEGs).",
            show_default=False,
        ),
    ],
    quality: Annotated[
        int,
        typer.Option(
            help="JPEG quality the images are re-compressed at: the quality you deploy on.",
            show_default=False,
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="The adapted checkpoint to write.", show_default=False)],
    split: Annotated[
        str,
        typer.Option(
            help="'train' (the run's training split: its validation images stay unseen) or 'all' (every image "
            "of a separate folder)."
        ),
    ] = "train",
    num_images: Annotated[
        int, typer.Option(help="Images the statistics are averaged over (all of them, for a smaller split).")
    ] = 3000,
    batch_size: Annotated[int, typer.Option(help="Images per batch.")] = 250,
    seed: Annotated[int, typer.Option(help="Seed of the image draw.")] = 0,
    workers: Annotated[int, typer.Option(help="Data-loader worker processes.")] = 0,
    as_json: JsonResult = False,
) -> None:
    """Re-estimate a checkpoint's BatchNorm statistics on images at the JPEG quality it will see; nothing else
    changes, and the result is quantized and exported like any FP checkpoint."""
    with user_errors(ctx):
        check_output_file(out, "--out", inputs=(checkpoint,))
        images = PtqData(
            data, split=split, num_images=num_images, batch_size=batch_size, seed=seed, workers=workers
        )
        with make_progress(not as_json, detail=False, transient=True) as progress:
            progress.add_task(f"BatchNorm statistics at quality {quality}", total=None)
            result = adapt_bn_checkpoint(checkpoint, out, images, quality=quality)
    if as_json:
        print_json(result.to_dict())
    else:
        out_console.print(
            f"wrote {escape(str(result.path))}: {result.layers} BatchNorm layers re-estimated on "
            f"{result.images['images']} images of {escape(data)} ({result.images['split']} split) at quality {quality}",
            highlight=False,
        )


def register(app: typer.Typer) -> None:
    """Add the `adapt-bn` command to `app`."""
    app.command(name="adapt-bn")(adapt_bn_command)
