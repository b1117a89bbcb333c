"""`dctq train ARCH --data DIR|cifar10 --out DIR`: train a registered model, with rich progress bars.

Options left out keep TrainConfig's defaults (shown in --help), so the defaults live in one place.
Several processes: `torchrun --nproc-per-node N $(which dctq) train ...`; only rank 0 prints.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ..calibration.distributed import detect_env
from ..calibration.train.config import TrainConfig, config_for
from ..calibration.train.data import build_train_data
from ..calibration.train.events import TrainResult
from ..calibration.train.loop import train
from ..common.files import check_output_dir
from .common import BadFiles, err_console, out_console, print_json, report_skipped, summary_table, user_errors
from .options import JsonResult, field_default_help, given, parse_arch_kwargs, parse_int_list
from .progress import TrainProgressView, make_progress

_default = functools.partial(field_default_help, TrainConfig)


def _summary(result: TrainResult) -> Table:
    table = summary_table("training done")
    last = result.history[-1] if result.history else None
    table.add_row("best epoch", str(result.best_epoch))
    if result.best_top1 is not None:
        table.add_row("best val top-1", f"{100 * result.best_top1:.2f}%")
    best = result.best_val
    if result.task == "autoencode" and best is not None:
        m = best.metrics
        if m.get("bpd_uniform") is not None:
            table.add_row(
                "best val bits/dim",
                f"{m['bpd_uniform']:.4f} (uniform code rate), {m['bpd_prior']:.4f} (EMA prior)",
            )
        table.add_row("best val PSNR", f"{m['psnr_rgb']:.2f} dB RGB, {m['psnr_y']:.2f} dB Y")
    if result.best_psnr is not None:
        table.add_row("best val PSNR", f"{result.best_psnr:.3f} dB")
    if last is not None and last.val is not None and last.val.top1 is not None and last.val.top5 is not None:
        table.add_row("last val top-1 / top-5", f"{100 * last.val.top1:.2f}% / {100 * last.val.top5:.2f}%")
    if last is not None and last.val is not None and last.val.psnr is not None:
        table.add_row("last val PSNR / SSIM", f"{last.val.psnr:.3f} dB / {last.val.ssim:.4f}")
    if last is not None:
        table.add_row("last train loss", f"{last.train_loss:.4f}")
    table.add_row("best checkpoint", escape(str(result.best_path)))
    table.add_row("last checkpoint", escape(str(result.last_path)))
    return table


def train_command(
    ctx: typer.Context,
    arch: Annotated[
        str, typer.Argument(help="Registered architecture (see `dctq models`).", show_default=False)
    ],
    data: Annotated[
        str,
        typer.Option(
            "--data",
            help="Classifiers: an ImageFolder of JPEGs (root/<class>/*.jpg), or 'cifar10' for the shared CIFAR-10 "
            "archive. SR models: a folder of HR images, or 'sr' for the shared BSD200+Yang91 archive. The validation "
            "set is split off it (fixed seed).",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Folder for best.pt, last.pt and last.state.pt.", show_default=False)
    ],
    epochs: Annotated[
        int | None, typer.Option(help="Passes over the training set." + _default("epochs"))
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            help="Images per step per process (per quality with --versions, or --qabn and no --qualities)."
            + _default("batch_size")
        ),
    ] = None,
    lr: Annotated[
        float | None, typer.Option(help="Peak learning rate." + _default("lr") + " (SR models: 4e-4)")
    ] = None,
    optimizer: Annotated[
        str | None,
        typer.Option(
            help="'sgd' or 'adam' (beta1 = --momentum); default: the model's (`dctq models -l`; SR models and "
            "autoencoders: adam), else sgd."
        ),
    ] = None,
    patch_size: Annotated[
        int | None,
        typer.Option(
            help="SR models: HR training patch side, a multiple of the scale." + _default("patch_size")
        ),
    ] = None,
    samples_per_epoch: Annotated[
        int | None,
        typer.Option(
            help="SR models: random training patches per epoch (default 8000; classifiers: one pass)."
        ),
    ] = None,
    momentum: Annotated[float | None, typer.Option(help="SGD momentum." + _default("momentum"))] = None,
    weight_decay: Annotated[
        float | None, typer.Option(help="L2 weight decay." + _default("weight_decay"))
    ] = None,
    nesterov: Annotated[
        bool | None,
        typer.Option("--nesterov/--no-nesterov", help="Nesterov momentum." + _default("nesterov")),
    ] = None,
    schedule: Annotated[
        str | None,
        typer.Option(help="'cosine', 'multistep' (with --milestones) or 'constant'." + _default("schedule")),
    ] = None,
    clip_grad_norm: Annotated[
        float | None,
        typer.Option(help="Clip the gradients' global norm to this value (default: no clipping)."),
    ] = None,
    milestones: Annotated[
        str | None,
        typer.Option(help="Epochs where multistep multiplies the rate by --gamma, e.g. 60,120,160."),
    ] = None,
    gamma: Annotated[float | None, typer.Option(help="Multistep factor." + _default("gamma"))] = None,
    warmup_epochs: Annotated[
        float | None, typer.Option(help="Linear warm-up length in epochs." + _default("warmup_epochs"))
    ] = None,
    label_smoothing: Annotated[
        float | None, typer.Option(help="Label smoothing." + _default("label_smoothing"))
    ] = None,
    qualities: Annotated[
        str | None,
        typer.Option(
            help="Re-compress each training image at one of these JPEG qualities, e.g. 90,60,30,10."
        ),
    ] = None,
    eval_quality: Annotated[
        int | None,
        typer.Option(help="Re-compress validation images at this JPEG quality (default: as stored)."),
    ] = None,
    qac: Annotated[
        bool | None, typer.Option("--qac/--no-qac", help="QSAM's QAC: weight each image's loss by c(Q).")
    ] = None,
    qac_normalize: Annotated[
        bool | None,
        typer.Option(
            "--qac-normalize/--no-qac-normalize",
            help="Divide the QAC weights by their batch mean, so --qac does not shrink the learning rate ~20x.",
        ),
    ] = None,
    qabn: Annotated[
        bool | None,
        typer.Option(
            "--qabn/--no-qabn",
            help="QSAM base stage: one BN branch per quality 90/60/30/10, hard routing. Alone: every image at "
            "all four qualities per step (QSAM's protocol, 4x the compute); with --qualities: one random quality "
            "per image, routed by its quant tables.",
        ),
    ] = None,
    versions: Annotated[
        bool | None,
        typer.Option(
            "--versions/--no-versions",
            help="QSAM's data protocol with plain BN: every image at all four qualities 90/60/30/10 per step, same "
            "crop/flip (4x the compute per epoch); the control for --qabn.",
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed of weights, data order, augmentation." + _default("seed"))
    ] = None,
    amp: Annotated[
        bool | None, typer.Option("--amp/--no-amp", help="float16 mixed precision (CUDA only).")
    ] = None,
    augment: Annotated[
        str | None,
        typer.Option(
            help="'default' (flip + pad/crop; on 32x32 DCT inputs the crop moves 16 px), 'flip', "
            "'crop' (flip + 4-px pad/crop in pixels; DCT files are re-encoded with their own tables), 'none'; "
            "photographs: 'rrc' (RandomResizedCrop + flip; DCT models in the DCT domain, no decode) or "
            "'rrc-pixels' (the exact crop in pixels, re-encoded with the file's tables)."
            + _default("augment")
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Data-loader worker processes per process." + _default("num_workers"))
    ] = None,
    val_fraction: Annotated[
        float | None,
        typer.Option(help="Share of the data held out for validation." + _default("val_fraction")),
    ] = None,
    max_steps: Annotated[
        int | None, typer.Option(help="Cut each epoch after this many steps (quick runs).")
    ] = None,
    log_every: Annotated[
        int | None, typer.Option(help="Steps between progress updates." + _default("log_every"))
    ] = None,
    device: Annotated[str | None, typer.Option(help="'auto', 'cpu' or 'cuda'." + _default("device"))] = None,
    arch_kwargs: Annotated[
        str | None, typer.Option(help="Extra architecture arguments as JSON, e.g. '{\"widths\": [16, 32]}'.")
    ] = None,
    skip_small_images: Annotated[
        bool,
        typer.Option(
            "--skip-small-images", help="SR models: leave out training images smaller than the patch."
        ),
    ] = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --out after its last epoch.")
    ] = False,
    bad_files: BadFiles = "stop",
    as_json: JsonResult = False,
) -> None:
    """Train ARCH on JPEG files; writes best.pt / last.pt checkpoints into --out every epoch.

    Classifiers train on the class folders' labels; autoencoders (dq_ae, dq_ae_cpu) reconstruct the images
    and take the model's own defaults (Adam 2e-4, constant rate, gradient clip 2) where options are left out.
    """
    with user_errors(ctx):
        check_output_dir(out, "--out")
        options = {
            "epochs": epochs,
            "batch_size": batch_size,
            "optimizer": optimizer,
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "schedule": schedule,
            "clip_grad_norm": clip_grad_norm,
            "milestones": parse_int_list(milestones, "--milestones"),
            "gamma": gamma,
            "warmup_epochs": warmup_epochs,
            "label_smoothing": label_smoothing,
            "train_qualities": parse_int_list(qualities, "--qualities"),
            "eval_quality": eval_quality,
            "qac": qac,
            "qac_normalize": qac_normalize,
            "qabn": qabn,
            "versions": versions,
            "seed": seed,
            "amp": amp,
            "augment": augment,
            "num_workers": workers,
            "val_fraction": val_fraction,
            "max_steps_per_epoch": max_steps,
            "log_every": log_every,
            "device": device,
            "arch_kwargs": parse_arch_kwargs(arch_kwargs),
            "patch_size": patch_size,
            "samples_per_epoch": samples_per_epoch,
            "skip_small_images": skip_small_images or None,
        }
        config = config_for(arch, **given(options))
        main = detect_env().is_main
        data_sets = build_train_data(data, config, bad_files=bad_files)
        if main:
            report_skipped(data_sets.skipped)
        if main and not as_json:
            err_console.print(
                f"training [bold]{escape(arch)}[/] on {len(data_sets.train)} samples "
                f"({escape(data_sets.description)}), validating on {len(data_sets.val)}",
                highlight=False,
            )
        with make_progress(main) as progress:
            result = train(
                config,
                data_sets.train,
                data_sets.val,
                out,
                resume=resume,
                progress=TrainProgressView(progress),
            )
    if not main:
        return
    if as_json:
        print_json(result.to_dict())
    else:
        out_console.print(_summary(result))


def register(app: typer.Typer) -> None:
    """Add the `train` command to `app`."""
    app.command(name="train")(train_command)
