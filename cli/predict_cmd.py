"""`dctq predict ARTIFACT IMG... [--backend] [--top-k] [--json]`: classify JPEG files; with an SR model,
`dctq predict model.pt low.jpg --out high.png` writes the upscaled image (a folder for several)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ..common.errors import ConfigError, DctqError
from ..common.files import check_output_dir, check_output_file
from ..deploy.artifact import load_artifact
from ..deploy.autoencode import Reconstruction, reconstruct
from ..deploy.predict import predict
from ..deploy.sr import upscale_files
from .common import err_console, out_console, print_json, user_errors
from .options import TrustCode


def predict_command(
    ctx: typer.Context,
    artifact: Annotated[
        Path,
        typer.Argument(help="A checkpoint (.pt), ONNX (.onnx), TorchScript (.ts), program (.pt2) or engine."),
    ],
    images: Annotated[
        list[Path], typer.Argument(help="JPEG files (SR models: any image file).", show_default=False)
    ],
    backend: Annotated[
        str | None,
        typer.Option(
            help="ort, torch or tensorrt (default: ort for .onnx, torch for .pt/.ts/.pt2, tensorrt for .engine)."
        ),
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", help="Classes shown per image.")] = 5,
    batch_size: Annotated[int, typer.Option(help="Images per run.")] = 32,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda (torch/tensorrt backends).")] = "auto",
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="SR models: the upscaled image to write (.png recommended); autoencoders: the reconstruction "
            "(a .png); a folder for several inputs.",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the predictions as JSON on stdout.")] = False,
    trust_code: TrustCode = False,
) -> None:
    """Predict the classes of JPEG images with any exported model, read straight from their DCT coefficients;
    super-resolution models write the upscaled images to --out.

    Autoencoders (dq_ae checkpoints, or their .encoder.onnx / .decoder.onnx): reconstruct each image (written
    with --out) and print the bits its codes take, next to the JPEG file's own size.
    """
    with user_errors(ctx):
        art = load_artifact(artifact, trust_code=trust_code)
        if art.meta.task == "autoencode":
            if out is not None:
                if len(images) == 1:
                    check_output_file(out, "--out", inputs=(artifact, *images))
                else:
                    check_output_dir(out, "--out")
            recs = reconstruct(art, images, out, device=device)
            _print_reconstructions(artifact, recs, as_json)
            return
        if art.meta.task == "sr":
            if out is None:
                raise ConfigError(
                    f"{artifact} is a super-resolution model: give --out high.png (or a folder)"
                )
            done = upscale_files(art, images, out, backend=backend, device=device)
        elif out is not None:
            raise DctqError(
                f"--out writes upscaled images of SR models and reconstructions of autoencoders; {artifact} is a "
                "classifier ('classify' model): drop --out"
            )
        else:
            done = None
    if done is not None:
        if as_json:
            print_json([d.__dict__ for d in done])
        else:
            for d in done:
                out_console.print(
                    f"{escape(d.source)} {d.input_size[0]}x{d.input_size[1]} -> {escape(d.output)} "
                    f"{d.output_size[0]}x{d.output_size[1]}",
                    highlight=False,
                )
        return
    with user_errors(ctx):
        predictions = predict(
            art,
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


def _print_reconstructions(artifact: Path, recs: list[Reconstruction], as_json: bool) -> None:
    if as_json:
        print_json([r.to_dict() for r in recs])
        return
    table = Table(title=f"{escape(str(artifact))} (autoencoder)", title_justify="left")
    table.add_column("image", overflow="fold")
    table.add_column("size", justify="right")
    table.add_column("code bits (uniform / prior)", justify="right")
    table.add_column("JPEG file bits", justify="right")
    table.add_column("PSNR RGB / Y dB", justify="right")
    table.add_column("reconstruction", overflow="fold")
    for r in recs:
        table.add_row(
            escape(r.path),
            f"{r.width}x{r.height}",
            f"{r.code_bits_uniform:.0f} / {r.code_bits_prior:.0f}",
            f"{8 * r.jpeg_bytes}",
            f"{r.psnr_rgb:.2f} / {r.psnr_y:.2f}",
            escape(r.out or "-"),
        )
    out_console.print(table)


def register(app: typer.Typer) -> None:
    """Add the `predict` command to `app`."""
    app.command(name="predict")(predict_command)
