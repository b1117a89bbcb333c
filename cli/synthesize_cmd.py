"""`dctq synthesize CKPT --out synth.pt`: zero-shot calibration data (IntraQ) from a checkpoint alone.

Options left out keep SynthConfig's defaults. Several processes:
`torchrun --nproc-per-node N $(which dctq) synthesize ...`; only rank 0 prints and writes.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ..calibration.distributed import detect_env
from ..calibration.zeroshot.config import SynthConfig
from ..calibration.zeroshot.data import SyntheticData
from ..calibration.zeroshot.grid import synthetic_grid_png
from ..calibration.zeroshot.synthesize import synthesize_checkpoint
from ..common.files import check_output_file
from .common import out_console, print_json, summary_table, user_errors
from .options import JsonResult, field_default_help, given, parse_quality_range
from .progress import SynthProgressView, make_progress

_default = functools.partial(field_default_help, SynthConfig)


def _summary(data: SyntheticData, out: Path) -> Table:
    table = summary_table("synthesis done")
    table.add_row("file", escape(str(out)))
    table.add_row("images", f"{len(data)} ({data.kind}, {data.num_batches} batches)")
    table.add_row("method", str(data.config.get("method")))
    if data.batch_losses:
        last = data.batch_losses[-1]
        table.add_row("last batch loss / L_BNS", f"{last['loss']:.4g} / {last['bns']:.4g}")
    if data.kind == "dct":
        q = data.config.get("qualities")
        table.add_row("JPEG qualities", f"{q[0]}..{q[1]}" if q else "?")
    return table


def synthesize_command(
    ctx: typer.Context,
    checkpoint: Annotated[
        Path, typer.Argument(help="A dctq checkpoint (.pt) of the FP model.", show_default=False)
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Output file (written after every batch).", show_default=False)
    ],
    num: Annotated[int | None, typer.Option(help="Images to make." + _default("num"))] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", help="Images optimised together." + _default("batch_size"))
    ] = None,
    iters: Annotated[
        int | None, typer.Option("--iters", help="Adam steps per batch." + _default("iterations"))
    ] = None,
    method: Annotated[
        str | None,
        typer.Option(
            help="'intraq' (BNS + SIL + MDC with LOR) or 'bnstats' (BNS + CE)." + _default("method")
        ),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Same seed, same images." + _default("seed"))] = None,
    lr: Annotated[float | None, typer.Option(help="Adam learning rate." + _default("lr"))] = None,
    qualities: Annotated[
        str | None, typer.Option(help="IJG quality range LOW,HIGH drawn per image." + _default("qualities"))
    ] = None,
    sil_eps: Annotated[
        float | None, typer.Option("--sil-eps", help="SIL's lowest soft target." + _default("sil_eps"))
    ] = None,
    centre_every: Annotated[
        int | None,
        typer.Option("--centre-every", help="Batches between MDC centre updates." + _default("centre_every")),
    ] = None,
    space: Annotated[
        str | None,
        typer.Option(
            "--space",
            help="DCT models: optimise 'stem' (normalised coefficients) or 'pixels' (RGB)."
            + _default("dct_space"),
        ),
    ] = None,
    device: Annotated[str | None, typer.Option(help="'auto', 'cpu' or 'cuda'." + _default("device"))] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue --out from its last finished batch.")
    ] = False,
    grid: Annotated[
        Path | None, typer.Option(help="Also write a PNG grid of the images (one row per class).")
    ] = None,
    as_json: JsonResult = False,
) -> None:
    """Make synthetic calibration images from CKPT alone (no data), for `dctq quantize --method intraq`."""
    with user_errors(ctx):
        check_output_file(out, "--out", inputs=(checkpoint,))
        if grid is not None:
            check_output_file(grid, "--grid", inputs=(checkpoint, out))
        options = {
            "num": num,
            "batch_size": batch_size,
            "iterations": iters,
            "method": method,
            "seed": seed,
            "lr": lr,
            "qualities": parse_quality_range(qualities),
            "sil_eps": sil_eps,
            "centre_every": centre_every,
            "dct_space": space,
            "device": device,
        }
        config = SynthConfig(**given(options))
        main = detect_env().is_main
        with make_progress(main and not as_json) as progress:
            data = synthesize_checkpoint(
                checkpoint, config, out, resume=resume, progress=SynthProgressView(progress)
            )
        if main and grid is not None:
            synthetic_grid_png(data, None, grid)
    if not main:
        return
    if as_json:
        print_json(data.summary(out))
    else:
        out_console.print(_summary(data, out))


def register(app: typer.Typer) -> None:
    """Add the `synthesize` command to `app`."""
    app.command(name="synthesize")(synthesize_command)
