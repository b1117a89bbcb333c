"""`dctq quantize CKPT --method ptq|intraq|bnstats --out q.pt`: a quantized checkpoint from an FP one.

ptq calibrates on real images (`--calib DIR|cifar10`, or the statistics of an earlier pass in
`--calib-cache FILE`); intraq and bnstats are zero-shot: synthetic images from the model alone (or a file
of `dctq synthesize`), then KD fine-tuning; they read no image. Layer control: `--skip`, `--override`,
`--recipe recipe.toml`; after calibration `--sensitivity` (ranking JSON + PNG beside --out) and
`--max-drop POINTS` (layers back to float, most sensitive first) on held-out images (`--val`).
Options left out keep the library's defaults (SynthConfig, ZeroShotConfig), shown in --help.
Several processes (zero-shot): `torchrun --nproc-per-node N $(which dctq) quantize ...`; rank 0 writes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ..calibration.distributed import detect_env
from ..calibration.quant.recipe import DEFAULT_RULES, build_recipe, parse_override, skip_rules
from ..calibration.quant.recipe_file import recipe_option, save_recipe
from ..calibration.workflow.plan import (
    LayerPlan,
    PtqData,
    ValData,
    ZeroShotPlan,
    check_layer_plan,
    check_plan,
)
from ..calibration.workflow.quantize import QuantizeResult, quantize_checkpoint
from ..calibration.zeroshot.config import SynthConfig, ZeroShotConfig
from ..common.files import check_output_file
from .common import out_console, print_json, summary_table, user_errors
from .options import JsonResult, field_default, field_default_help, given, parse_int_list
from .progress import QuantizeProgressView, make_progress

ListOption = list[str] | None


def _range(rows: list, weights: bool) -> str:
    chosen = [r for r in rows if (r.axis is not None) == weights and r.amax_min is not None]
    if not chosen:
        return "-"
    return f"{min(r.amax_min for r in chosen):.4g} .. {max(r.amax_max for r in chosen):.4g}"


def _data_line(result: QuantizeResult) -> str:
    info = result.info
    if result.method == "ptq":
        ptq = info["ptq"]
        return f"{ptq['images']} real images of {ptq['data']} ({ptq['split']} split, as stored)"
    synth = info["synthesis"]
    line = f"{synth['images']} synthetic images ({synth['method']}, {synth['iterations']} iterations)"
    return line + (f", {escape(synth['file'])}" if synth.get("file") else "")


def _summary(result: QuantizeResult) -> Table:
    recipe = result.recipe
    table = summary_table("quantization done")
    table.add_row("file", escape(str(result.path)) if result.path else "(not written)")
    if result.metrics is not None:
        table.add_row("run record", escape(str(result.metrics)))
    table.add_row("method", result.method)
    table.add_row(
        "recipe",
        f"W{recipe.weight_bits}A{recipe.act_bits}, {recipe.calibrator} calibrator"
        + (f" {dict(recipe.calibrator_args)}" if recipe.calibrator_args else "")
        + (", BN folded" if recipe.fold_bn else ""),
    )
    overrides = [r for r in recipe.rules if r not in DEFAULT_RULES]
    if overrides:
        table.add_row(
            "layer rules",
            escape(
                ", ".join(
                    f"{r.pattern}: {r.action if r.action == 'skip' else r.overrides}" for r in overrides[:8]
                )
            )
            + (f", ... ({len(overrides)} rules)" if len(overrides) > 8 else ""),
        )
    table.add_row("calibration data", _data_line(result))
    cache = result.info.get("ptq", {}).get("calib_cache")
    if cache:
        table.add_row(
            "calibration cache",
            escape(cache["file"]) + (" (reused, no forward pass)" if cache["reused"] else " (written)"),
        )
    layers = result.info.get("layers")
    if layers:
        table.add_row(
            "held-out top-1",
            f"FP {layers['fp_top1']:.2f}%, quantized {layers['quantized_top1']:.2f}% "
            f"({layers['val']['images']} images of {escape(layers['val']['data'])}, {layers['val']['split']} split)",
        )
        table.add_row("most sensitive", escape(", ".join(layers["ranking"][:5])))
        fb = layers.get("fallback")
        if fb:
            returned = fb["returned_to_float"]
            table.add_row(
                "fallback",
                f"{'met' if fb['met'] else 'NOT met'}: drop {fb['final_drop_points']:.2f} points (asked <= {fb['max_drop_points']:g}) "
                f"with {len(returned)} layer(s) in float"
                + (f": {escape(', '.join(returned))}" if returned else ""),
            )
        if layers.get("files"):
            table.add_row(
                "sensitivity report", escape(f"{layers['files']['json']}, {layers['files']['png']}")
            )
    if result.method != "ptq":
        zs = result.info["zero_shot"]
        line = f"{zs['epochs']} epochs x {zs['steps_per_epoch']} steps, batch {zs['batch_size']}"
        last = result.info.get("fine_tune")
        if last:
            line += f"; last epoch loss {last['loss']:.4g}, agreement with FP {100 * last['agreement']:.1f}%"
        table.add_row("fine-tuning", line if zs["epochs"] else "none (calibration only)")
    weights = sum(r.axis is not None for r in result.quantizers)
    table.add_row(
        "quantizers",
        f"{len(result.quantizers)} ({weights} weights per channel, {len(result.quantizers) - weights} activations)",
    )
    table.add_row("activation amax", _range(result.quantizers, weights=False))
    table.add_row("weight amax", _range(result.quantizers, weights=True))
    table.add_row("ONNX Q/DQ export", "yes (INT8)" if recipe.exportable else "no (simulated bit width)")
    return table


def _layers(result: QuantizeResult) -> Table:
    table = Table(title="quantizers", title_justify="left")
    for name in ("quantizer", "bits", "grid", "axis", "amax min", "amax max"):
        if name == "quantizer":
            table.add_column(name, overflow="fold")
        else:
            table.add_column(name, justify="right")
    for r in result.quantizers:
        table.add_row(
            escape(r.name),
            str(r.bits),
            f"[{r.qmin}, {r.qmax}]",
            "-" if r.axis is None else str(r.axis),
            f"{r.amax_min:.4g}" if r.amax_min is not None else "-",
            f"{r.amax_max:.4g}" if r.amax_max is not None else "-",
        )
    return table


def quantize_command(
    ctx: typer.Context,
    checkpoint: Annotated[
        Path,
        typer.Argument(help="The FP checkpoint (.pt), e.g. best.pt of `dctq train`.", show_default=False),
    ],
    out: Annotated[
        Path, typer.Option("--out", help="The quantized checkpoint to write.", show_default=False)
    ],
    method: Annotated[
        str,
        typer.Option(
            help="'ptq' (calibrate on real images, needs --calib), 'intraq' (zero-shot, IntraQ synthetic "
            "images + KD fine-tuning) or 'bnstats' (zero-shot, BN-statistics baseline)."
        ),
    ] = "ptq",
    calib: Annotated[
        str | None,
        typer.Option(
            help="ptq: an ImageFolder of JPEGs, or 'cifar10' for the shared archive.", show_default=False
        ),
    ] = None,
    calib_split: Annotated[
        str | None,
        typer.Option(
            help="ptq: images from the 'train' split (the FP model's validation split stays unseen; "
            "default) or 'all' (a separate calibration folder)."
        ),
    ] = None,
    num_images: Annotated[
        int | None,
        typer.Option(help="ptq: calibration images." + field_default_help(PtqData, "num_images")),
    ] = None,
    recipe: Annotated[
        str | None,
        typer.Option(
            help=escape(
                "Recipe preset (int8 (default), int8-max, int8-percentile, int8-mse, w4a4, w3a3) or a recipe "
                "file recipe.toml (fields, optionally on a preset, and [[rules]]; see --save-recipe)."
            )
        ),
    ] = None,
    skip: Annotated[
        ListOption,
        typer.Option(
            "--skip",
            help="Keep the layers whose module name matches this glob in float, e.g. fc or 'stages.0.*' "
            "(repeatable; before the recipe's rules).",
            show_default=False,
        ),
    ] = None,
    override: Annotated[
        ListOption,
        typer.Option(
            "--override",
            help="Per-quantizer widths of matching layers: PATTERN:input=BITS|float[,weight=BITS|float], e.g. "
            "front.upscale.0:input=8 (8-bit input, weights at --bits) (repeatable; after --skip).",
            show_default=False,
        ),
    ] = None,
    save_recipe_to: Annotated[
        Path | None,
        typer.Option(
            "--save-recipe",
            help="Also write the recipe the model was quantized with (after any --max-drop fallback) as TOML.",
            show_default=False,
        ),
    ] = None,
    bits: Annotated[
        str | None, typer.Option(help="Bit widths wNaM: w8a8 (exportable), w5a5, w4a4, w3a3 (simulated).")
    ] = None,
    calibrator: Annotated[
        str | None,
        typer.Option(help="Activation calibrator: max, percentile, entropy or mse (default: the recipe's)."),
    ] = None,
    add_inputs: Annotated[
        str | None,
        typer.Option(
            help=escape(
                "Residual Adds: 'residual' quantizes the shortcut input only (TensorRT fuses the Add into "
                "the conv); 'both' also the conv side, which ONNX Runtime needs for integer kernels. "
                "[default: the recipe's, residual]"
            )
        ),
    ] = None,
    synthetic: Annotated[
        Path | None,
        typer.Option(
            help="Zero-shot: a file of `dctq synthesize` to reuse; when missing, the synthetic images are "
            "written there (and a partial file is continued)."
        ),
    ] = None,
    calib_synthetic: Annotated[
        Path | None,
        typer.Option(
            help="Zero-shot: calibrate activation ranges on this finished `dctq synthesize` file of the same "
            "model instead (IntraQ's code calibrates on BN-statistics images: --method bnstats)."
        ),
    ] = None,
    num_synthetic: Annotated[
        int | None,
        typer.Option(help="Zero-shot: synthetic images to make." + field_default_help(SynthConfig, "num")),
    ] = None,
    synth_iters: Annotated[
        int | None,
        typer.Option(
            help="Zero-shot: Adam steps per synthetic batch." + field_default_help(SynthConfig, "iterations")
        ),
    ] = None,
    synth_batch_size: Annotated[
        int | None,
        typer.Option(
            help="Zero-shot: images optimised together." + field_default_help(SynthConfig, "batch_size")
        ),
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(
            help="Zero-shot: KD fine-tuning epochs (0: calibrate only); the learning-rate milestones scale "
            "along." + field_default_help(ZeroShotConfig, "epochs")
        ),
    ] = None,
    steps_per_epoch: Annotated[
        int | None,
        typer.Option(
            help="Zero-shot: steps per epoch." + field_default_help(ZeroShotConfig, "steps_per_epoch")
        ),
    ] = None,
    milestones: Annotated[
        str | None,
        typer.Option(
            help="Zero-shot: epochs where the fine-tuning rate drops x0.1, e.g. 16,28,36 (default: IntraQ's "
            "16,36,56 of 147 epochs, scaled to --epochs)."
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            help=escape(
                f"Images per batch: ptq calibration [default: {field_default(PtqData, 'batch_size')}], zero-shot "
                "calibration and "
                f"fine-tuning [default: {field_default(ZeroShotConfig, 'batch_size')}]."
            )
        ),
    ] = None,
    calib_cache: Annotated[
        Path | None,
        typer.Option(
            help="ptq: a calibration cache: when the file exists, its statistics calibrate this recipe without "
            "a forward pass (any calibrator, width, --skip/--override; same model only; --calib optional); "
            "otherwise this run's statistics are written there.",
            show_default=False,
        ),
    ] = None,
    sensitivity: Annotated[
        bool,
        typer.Option(
            "--sensitivity",
            help="Rank the quantized layers (each alone quantized, each alone in float) on held-out images; "
            "write OUT.sensitivity.json and OUT.sensitivity.png.",
        ),
    ] = False,
    max_drop: Annotated[
        float | None,
        typer.Option(
            help="Return layers to float, most sensitive first, until held-out top-1 is at most this many points "
            "below FP, e.g. 0.5; the recipe written skips them.",
            show_default=False,
        ),
    ] = None,
    val: Annotated[
        str | None,
        typer.Option(
            help=escape(
                "Labelled held-out images for --sensitivity / --max-drop: an ImageFolder or 'cifar10' [default: "
                "the validation split of --calib, when calibrating on its train split]."
            ),
            show_default=False,
        ),
    ] = None,
    val_split: Annotated[
        str | None,
        typer.Option(help="'val' (the FP run's validation split; default) or 'all' (a separate folder)."),
    ] = None,
    val_images: Annotated[
        int | None,
        typer.Option(
            help="Held-out images drawn (seeded by --seed)." + field_default_help(ValData, "num_images")
        ),
    ] = None,
    sensitivity_metric: Annotated[
        str | None,
        typer.Option(
            help="Rank layers by 'accuracy' (top-1 points, ties by SQNR) or 'sqnr' (dB of the logits vs FP)."
            + field_default_help(LayerPlan, "metric")
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the calibration subset / synthesis / fine-tuning.")] = 0,
    device: Annotated[str, typer.Option(help="'auto', 'cpu' or 'cuda'.")] = "auto",
    workers: Annotated[int, typer.Option(help="ptq: data-loader worker processes.")] = 0,
    layers: Annotated[bool, typer.Option("--layers", help="Also print every quantizer's range.")] = False,
    as_json: JsonResult = False,
) -> None:
    """Quantize an FP checkpoint (PTQ on real images, or zero-shot with IntraQ / BN-statistics images)."""
    with user_errors(ctx):
        # The model, and the files the run reads or writes beside it (a synthetic set, a calibration cache).
        companions = tuple(p for p in (synthetic, calib_synthetic, calib_cache) if p is not None)
        check_output_file(out, "--out", inputs=(checkpoint, *companions))
        if save_recipe_to is not None:
            check_output_file(save_recipe_to, "--save-recipe", inputs=(checkpoint, out))
        if calib_cache is not None and not calib_cache.is_file():  # written by this run
            check_output_file(calib_cache, "--calib-cache", inputs=(checkpoint, out))
        flags = {
            "--calib-split": calib_split,
            "--num-images": num_images,
            "--synthetic": synthetic,
            "--calib-synthetic": calib_synthetic,
            "--num-synthetic": num_synthetic,
            "--synth-iters": synth_iters,
            "--synth-batch-size": synth_batch_size,
            "--epochs": epochs,
            "--steps-per-epoch": steps_per_epoch,
            "--milestones": milestones,
        }
        ptq_data = plan = None
        if method == "ptq" and calib is None and calib_cache is not None and calib_cache.is_file():
            check_plan(method, str(calib_cache), set(given(flags)))  # the cache stands for the images
        else:
            check_plan(method, calib, set(given(flags)))
        if method == "ptq":
            options = {"split": calib_split, "num_images": num_images, "batch_size": batch_size}
            ptq_data = PtqData(calib, workers=workers, seed=seed, cache=calib_cache, **given(options))
        else:
            synth_options = {"num": num_synthetic, "iterations": synth_iters, "batch_size": synth_batch_size}
            synth_given = given(synth_options)
            synth = (
                SynthConfig(method=method, seed=seed, device=device, **synth_given) if synth_given else None
            )
            base = ZeroShotConfig() if epochs is None else ZeroShotConfig().with_epochs(epochs)
            tune_options = {
                "steps_per_epoch": steps_per_epoch,
                "batch_size": batch_size,
                "milestones": parse_int_list(milestones, "--milestones"),
            }
            fine_tune = dataclasses.replace(base, seed=seed, device=device, **given(tune_options))
            plan = ZeroShotPlan(synthetic, synth, fine_tune, calib_synthetic)
        val_options = {"split": val_split, "num_images": val_images}
        layer_plan = LayerPlan(
            sensitivity=sensitivity,
            max_drop=max_drop,
            val=ValData(val, seed=seed, **given(val_options))
            if val is not None or given(val_options)
            else None,
            **given({"metric": sensitivity_metric}),
        )
        layer_flags = {"--val": val, "--val-split": val_split, "--val-images": val_images,
                       "--sensitivity-metric": sensitivity_metric, "--calib-cache": calib_cache}  # fmt: skip
        check_layer_plan(method, layer_plan, ptq_data, set(given(layer_flags)))
        rules = skip_rules(skip or []) + tuple(parse_override(o) for o in override or [])
        base = recipe_option(recipe) if recipe is not None else None
        quant_recipe = build_recipe(base, bits, calibrator, add_inputs, rules=rules)
        main = detect_env().is_main
        with make_progress(main and not as_json) as progress:
            result = quantize_checkpoint(
                checkpoint,
                out,
                method=method,
                recipe=quant_recipe,
                calib=ptq_data,
                zero_shot=plan,
                device=device,
                layers=layer_plan if layer_plan.active else None,
                progress=QuantizeProgressView(progress),
            )
        if save_recipe_to is not None and main:
            save_recipe(save_recipe_to, result.recipe)
    if not main:
        return
    if as_json:
        print_json(result.to_dict())
        return
    out_console.print(_summary(result))
    if layers:
        out_console.print(_layers(result))


def register(app: typer.Typer) -> None:
    """Add the `quantize` command to `app`."""
    app.command(name="quantize")(quantize_command)
