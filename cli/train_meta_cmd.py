"""`dctq train-meta BASE.pt --data DIR|cifar10 --out DIR`: QSAM's meta stage on a `dctq train --qabn` checkpoint.

Only the QABN mixing MLP learns (backbone and BN branches frozen); afterwards `dctq evaluate` mixes the
branches with it instead of routing each image to its nearest base quality. The training/validation
split is the base run's (its saved TrainConfig), so the meta stage never sees the base run's
validation images. Options left out keep MetaConfig's defaults (QSAM's), shown in --help.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ..calibration.qsam.data import meta_train_data
from ..calibration.qsam.meta import MetaConfig, MetaResult, train_meta
from ..common.files import check_output_dir
from .common import err_console, out_console, print_json, summary_table, user_errors
from .options import JsonResult, field_default_help, given, parse_int_list
from .progress import MetaProgressView, make_progress

_default = functools.partial(field_default_help, MetaConfig)


def _summary(result: MetaResult) -> Table:
    table = summary_table("meta stage done")
    table.add_row("best epoch", str(result.best_epoch))
    table.add_row("best mean val top-1", f"{100 * result.best_mean_top1:.2f}%")
    best = next((h for h in result.history if h.epoch == result.best_epoch), None)
    if best is not None:
        table.add_row("per quality", "  ".join(f"q{q} {100 * v:.2f}%" for q, v in best.val_top1.items()))
    table.add_row("best checkpoint", escape(str(result.best_path)))
    table.add_row("last checkpoint", escape(str(result.last_path)))
    return table


def train_meta_command(
    ctx: typer.Context,
    checkpoint: Annotated[
        Path,
        typer.Argument(help="Base-stage checkpoint from `dctq train --qabn` (best.pt).", show_default=False),
    ],
    data: Annotated[
        str,
        typer.Option(
            "--data",
            help="The base run's data (ImageFolder of JPEGs or 'cifar10'); its split is reused.",
            show_default=False,
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Folder for best.pt and last.pt.", show_default=False)],
    epochs: Annotated[int | None, typer.Option(help="Meta epochs." + _default("epochs"))] = None,
    steps: Annotated[
        int | None, typer.Option(help="Episodes per epoch (default: training images // --batch-size).")
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(help="Images per meta-train and per meta-test batch." + _default("batch_size")),
    ] = None,
    lr: Annotated[
        float | None, typer.Option(help="Adam learning rate of the mixer." + _default("lr"))
    ] = None,
    constant_epochs: Annotated[
        int | None,
        typer.Option(
            help="Epochs at the full rate before the exponential decay." + _default("constant_epochs")
        ),
    ] = None,
    inner_lr: Annotated[
        float | None, typer.Option(help="Step size of the inner (MAML) step." + _default("inner_lr"))
    ] = None,
    qac: Annotated[
        bool | None,
        typer.Option(
            "--qac/--no-qac", help="Weight the episode losses by c(Q), as QSAM does." + _default("qac")
        ),
    ] = None,
    qac_scale: Annotated[
        str | None,
        typer.Option(
            help="Scale of the c(Q)-weighted episode losses: 'batch' (QSAM's code: c(Q) summed over the batch "
            "times the batch-mean CE) or 'sample' (the per-sample mean, B times smaller)."
            + _default("qac_scale")
        ),
    ] = None,
    held_out: Annotated[
        str | None,
        typer.Option(help="Meta-test qualities (never base qualities)." + _default("held_out_qualities")),
    ] = None,
    eval_qualities: Annotated[
        str | None,
        typer.Option(
            help="Validation qualities; best = best mean top-1 over them." + _default("eval_qualities")
        ),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the episodes." + _default("seed"))] = None,
    workers: Annotated[
        int | None, typer.Option(help="Data-loader worker processes." + _default("num_workers"))
    ] = None,
    device: Annotated[str | None, typer.Option(help="'auto', 'cpu' or 'cuda'." + _default("device"))] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the meta stage in --out after its last epoch.")
    ] = False,
    as_json: JsonResult = False,
) -> None:
    """QSAM's meta stage: learn the QABN mixing MLP of a base-stage checkpoint (backbone frozen)."""
    with user_errors(ctx):
        check_output_dir(out, "--out")
        options = {
            "epochs": epochs,
            "steps_per_epoch": steps,
            "batch_size": batch_size,
            "lr": lr,
            "constant_epochs": constant_epochs,
            "inner_lr": inner_lr,
            "qac": qac,
            "qac_scale": qac_scale,
            "held_out_qualities": parse_int_list(held_out, "--held-out"),
            "eval_qualities": parse_int_list(eval_qualities, "--eval-qualities"),
            "seed": seed,
            "num_workers": workers,
            "device": device,
        }
        config = MetaConfig(**given(options))
        data_sets = meta_train_data(checkpoint, data)
        if not as_json:
            err_console.print(
                f"meta stage of [bold]{escape(str(checkpoint))}[/] on {len(data_sets.train)} images, "
                f"validating on {len(data_sets.val)} at qualities {', '.join(map(str, config.eval_qualities))}",
                highlight=False,
            )
        with make_progress() as progress:
            show = MetaProgressView(progress, config.epochs)
            result = train_meta(
                config, checkpoint, data_sets.train, data_sets.val, out, progress=show, resume=resume
            )
    if as_json:
        print_json(result.to_dict())
    else:
        out_console.print(_summary(result))


def register(app: typer.Typer) -> None:
    """Add the `train-meta` command to `app`."""
    app.command(name="train-meta")(train_meta_command)
