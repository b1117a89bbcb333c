"""`dctq evaluate CKPT --data DIR|cifar10 [--qualities ...]`: top-1/top-5 per JPEG quality; for SR models
`--data set5,set14|DIR`: PSNR/SSIM per set (per image with --json). Dispatches on the artifact's task."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ..calibration.train.config import saved_val_fraction
from ..common.errors import ConfigError
from ..common.files import check_output_file, write_text_atomic
from ..common.records import metrics_path
from ..deploy.artifact import load_artifact
from ..deploy.autoencode import AutoencoderReport, evaluate_autoencoder
from ..deploy.evaluate import EvalReport, evaluate_artifact
from ..deploy.sr import SrEvalReport, evaluate_sr
from ..jpeg.sr.sources import NAMED
from .common import BadFiles, err_console, json_text, out_console, print_json, report_skipped, user_errors
from .options import JsonReport, TrustCode, parse_qualities
from .progress import EvalProgressView, make_progress


def _table(report: EvalReport, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("quality", justify="right")
    for name in ("images", "top-1 %", "top-5 %", "loss"):
        table.add_column(name, justify="right")
    for r in report.rows:
        quality = "stored" if r.quality is None else str(r.quality)
        table.add_row(quality, str(r.images), f"{100 * r.top1:.2f}", f"{100 * r.top5:.2f}", f"{r.loss:.4f}")
    if len(report.rows) > 1:
        table.add_row("mean", "", f"{100 * report.mean_top1:.2f}", "", "", style="bold")
    return table


def _ae_table(report: AutoencoderReport, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for name in (
        "quality",
        "images",
        "bits/dim (uniform)",
        "bits/dim (prior)",
        "recon NLL bits/dim",
        "code bits uniform / prior",
        "PSNR RGB / Y dB",
        "codes used",
        "perplexity",
    ):
        table.add_column(name, justify="right")
    for quality, m in report.rows:
        recon = m["recon_bpd"]
        table.add_row(
            "stored" if quality is None else str(quality),
            str(m["images"]),
            "-" if m["bpd_uniform"] is None else f"{m['bpd_uniform']:.4f}",
            "-" if m["bpd_prior"] is None else f"{m['bpd_prior']:.4f}",
            "-" if recon is None else f"{recon:.4f}",
            f"{m['code_bits_uniform']:.0f} / {m['code_bits_prior']:.0f}",
            f"{m['psnr_rgb']:.2f} / {m['psnr_y']:.2f}",
            " / ".join(f"{100 * u:.0f}%" for u in m["usage"]),
            " / ".join(f"{p:.1f}" for p in m["perplexity"]),
        )
    notes = [f"backend {report.backend}"]
    if report.params is not None:
        notes.append(f"{report.params:,} parameters")
    if report.train_epoch_seconds is not None:
        steps = f" ({report.train_steps_per_epoch} steps)" if report.train_steps_per_epoch else ""
        notes.append(f"training {report.train_epoch_seconds:.0f} s per epoch{steps}")
    notes.append(f"evaluated in {report.eval_seconds:.1f} s")
    table.caption = (
        "; ".join(notes) + ". bits/dim = reconstruction NLL + code rate (uniform: log2 K per code, an upper "
        "bound; prior: the EMA code counts learned in training). Codes used / perplexity: per level, bottom first."
    )
    return table


def _sr_table(report: SrEvalReport, title: str) -> Table:
    table = Table(title=title, title_justify="left", caption="Y channel (BT.601), scale border cropped")
    for name, justify in (("set", "left"), ("images", "right"), ("PSNR dB", "right"), ("SSIM", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for s in report.sets:
        table.add_row(escape(s.name), str(len(s.images)), f"{s.psnr:.3f}", f"{s.ssim:.4f}")
    return table


def _evaluate_sr(art, data: str, qualities: str | None, backend: str | None, device: str) -> SrEvalReport:  # type: ignore[no-untyped-def]
    if qualities is not None:
        raise ConfigError(
            f"--qualities re-compresses JPEGs for classifiers; {art.path} is an SR model: drop it"
        )
    if data in ("cifar10",):
        raise ConfigError(
            f"{art.path} is a super-resolution model; evaluate it on --data set5,set14 or a folder of HR images"
        )
    sources = [d for d in data.split(",") if d] if "," in data else [data]
    with make_progress(True, detail=False, transient=True) as progress:
        tasks: dict[str, object] = {}

        def show(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = progress.add_task(name, total=total)
            progress.update(tasks[name], completed=done)  # type: ignore[arg-type]

        return evaluate_sr(art, sources, backend=backend, device=device, progress=show)


def evaluate_command(
    ctx: typer.Context,
    checkpoint: Annotated[
        Path,
        typer.Argument(
            help="A dctq artifact: checkpoint (.pt, float or quantized), ONNX (.onnx), TorchScript (.ts), "
            "torch.export program (.pt2) or TensorRT engine (.engine), with its JSON sidecar."
        ),
    ],
    data: Annotated[
        str,
        typer.Option(
            "--data",
            help="An ImageFolder of JPEGs, or 'cifar10' for the shared archive; SR models: set5, set14 "
            "(comma-separated) or a folder of HR images.",
            show_default=False,
        ),
    ],
    qualities: Annotated[
        str | None,
        typer.Option(
            help="JPEG qualities to re-compress the images at, e.g. 10,20,30,40,50,60,70,80,90,100; 'qsam' for "
            "QSAM's 18 anchors 95..10; default: the files as stored."
        ),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(
            help="'val' (the validation split of training: same --val-fraction, same fixed seed), 'train', or "
            "'all' (every image: use it for a separate test folder). Default: val, which scores only the "
            "--val-fraction share of --data (10% unless the checkpoint says otherwise), and says so.",
            show_default=False,
        ),
    ] = None,
    val_fraction: Annotated[
        float | None,
        typer.Option(help="Validation share for --split val/train (default: the checkpoint's, else 0.1)."),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Images per batch.")] = 256,
    workers: Annotated[int, typer.Option(help="Data-loader worker processes.")] = 0,
    device: Annotated[str, typer.Option(help="'auto', 'cpu' or 'cuda'.")] = "auto",
    routing: Annotated[
        str,
        typer.Option(
            help="QSAM QABN models: 'oracle' (branch of the nearest base quality), 'mixer' (the quant-table MLP), "
            "or 'auto' (oracle after the base stage, mixer after the meta stage)."
        ),
    ] = "auto",
    backend: Annotated[
        str | None,
        typer.Option(help="Runtime: 'torch', 'ort' or 'tensorrt' (default: the artifact's natural one)."),
    ] = None,
    bad_files: BadFiles = "stop",
    as_json: JsonReport = False,
    trust_code: TrustCode = False,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Also write the JSON report to this file and the per-quality rows beside it as "
            "<name>.metrics.csv (atomically: complete or absent).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Top-1 / top-5 accuracy of an artifact on JPEG images, at each requested JPEG quality.

    Autoencoders (a dq_ae checkpoint, or its exported .encoder.onnx / .decoder.onnx in ONNX Runtime): bits/dim
    (reconstruction NLL + code rate, uniform bound and learned prior), PSNR, codebook usage, parameters and
    the training time per epoch.
    """
    with user_errors(ctx):
        if out is not None:
            check_output_file(out, "--out", inputs=(checkpoint,))
        art = load_artifact(checkpoint, trust_code=trust_code)
        if art.meta.task == "sr":
            sr_report = _evaluate_sr(art, data, qualities, backend, device)
        elif data in NAMED:
            raise ConfigError(
                f"--data {data} is a super-resolution set, but {checkpoint} is an image classifier; give "
                "cifar10 or an ImageFolder of JPEGs"
            )
        else:
            sr_report = None
    if sr_report is not None:
        result = {**sr_report.to_dict(per_image=True), "checkpoint": str(checkpoint), "data": data}
        if out is not None:
            write_text_atomic(out, json_text(result))
        if as_json:
            print_json(result)
        else:
            out_console.print(
                _sr_table(sr_report, f"{escape(str(checkpoint))} ({sr_report.arch}, x{sr_report.scale})")
            )
        return
    with user_errors(ctx):
        quality_list = parse_qualities(qualities)
        fraction = saved_val_fraction(art.extra) if val_fraction is None else val_fraction
        if art.meta.task == "autoencode":
            with make_progress(not as_json, detail=False, transient=True) as progress:
                ae_report = evaluate_autoencoder(
                    art,
                    data,
                    val_fraction=fraction,
                    split=split or "val",
                    qualities=quality_list,
                    batch_size=batch_size,
                    num_workers=workers,
                    device=device,
                    progress=EvalProgressView(progress),
                )
            _finish(
                {**ae_report.to_dict(), "checkpoint": str(checkpoint), "data": data, "split": split or "val"},
                out,
                as_json,
            )
            if not as_json:
                title = f"{escape(str(checkpoint))} ({ae_report.arch}, autoencoder) on {escape(data)}, split {split or 'val'}"
                out_console.print(_ae_table(ae_report, title))
            return
        with make_progress(not as_json, detail=False, transient=True) as progress:
            report = evaluate_artifact(
                art,
                data,
                val_fraction=fraction,
                split=split or "val",
                bad_files=bad_files,
                qualities=quality_list,
                batch_size=batch_size,
                num_workers=workers,
                device=device,
                backend=backend,
                qabn_routing=routing,
                progress=EvalProgressView(progress),
                record=metrics_path(out) if out is not None else None,
            )
    if split is None:
        err_console.print(
            f"note: scored the validation split only ({report.rows[0].images} images, {fraction:g} of {escape(data)}, "
            "fixed seed); for a separate test folder pass --split all",
            highlight=False,
            soft_wrap=True,
        )
    report_skipped(report.skipped)
    split = split or "val"
    result = {**report.to_dict(), "checkpoint": str(checkpoint), "data": data, "split": split}
    _finish(result, out, as_json)
    if not as_json:
        title = f"{escape(str(checkpoint))} ({report.arch}) on {escape(data)}, split {split}"
        out_console.print(_table(report, title))


def _finish(result: dict, out: Path | None, as_json: bool) -> None:
    if out is not None:
        write_text_atomic(out, json_text(result))
    if as_json:
        print_json(result)


def register(app: typer.Typer) -> None:
    """Add the `evaluate` command to `app`."""
    app.command(name="evaluate")(evaluate_command)
