"""Zero-shot vs real-data quantization: top-1 of PTQ (real images), BN-statistics and IntraQ zero-shot
models of one FP checkpoint at W8A8 / W5A5 / W4A4 / W3A3.

- PTQ: calibration on `--num-images` training-split images (the same for every bit width), no training.
- bnstats / intraq: `--num-synthetic` images synthesized from the FP model alone (once per method,
  shared by every bit width; `--synthetic-dir` keeps them as <dir>/<method>.pt and reuses them), then
  calibration on them and KD fine-tuning for `--epochs` x `--steps-per-epoch` steps (IntraQ's schedule
  squeezed, ZeroShotConfig.with_epochs). The defaults are scaled for a CPU (IntraQ: 5120 images x 1000
  iterations, 147 x 200 steps of 256): raise them on a GPU.
Recipes per bit width: `build_recipe(bits=...)` (W8A8: entropy, TensorRT's grid; lower: MSE calibration,
unsigned post-ReLU grids, simulated), or `--calibrator` for all. Evaluation: the checkpoint's
validation split (or `--max-eval` of it), as stored plus `--qualities`.

    .venv/bin/python bench/zeroshot_accuracy.py runs/dct_plain/best.pt --json zs.json
    .venv/bin/python bench/zeroshot_accuracy.py best.pt --num-synthetic 5120 --synth-iters 1000 --epochs 20 \\
        --steps-per-epoch 200 --tune-batch-size 256 --device cuda --synthetic-dir synth/
    .venv/bin/python bench/zeroshot_accuracy.py best.pt --max-eval 64 --num-images 32 --num-synthetic 16 \\
        --synth-iters 5 --epochs 1 --steps-per-epoch 2 --bits w8a8,w4a4     # smoke run

Prints one markdown table per evaluated quality (rows: methods; columns: bit widths) and, with --json,
writes every number and timing.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import int_list, script_main
from ptq_accuracy import (
    accuracy,
    calibration_batches,
    common_args,
    eval_set,
    machine,
    quality_columns,
)

from dctq.calibration.ptq import ptq
from dctq.calibration.quant.recipe import build_recipe
from dctq.calibration.zeroshot.config import SynthConfig, ZeroShotConfig
from dctq.calibration.zeroshot.distill import distill_on_synthetic
from dctq.calibration.zeroshot.synthesize import synthesize
from dctq.models.checkpoint import load_checkpoint

METHODS = {"ptq": "PTQ (real images)", "bnstats": "BN-stats zero-shot", "intraq": "IntraQ zero-shot"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_args(p)
    p.add_argument("--bits", default="w8a8,w5a5,w4a4,w3a3", help="bit widths (default w8a8,w5a5,w4a4,w3a3)")
    p.add_argument("--methods", default="ptq,bnstats,intraq", help="methods to compare (default all three)")
    p.add_argument("--qualities", default="", help="re-compression qualities besides the stored files")
    p.add_argument("--calibrator", default=None, help="one activation calibrator for all (default per bits)")
    p.add_argument("--num-synthetic", type=int, default=512, help="synthetic images per method (default 512)")
    p.add_argument(
        "--synth-iters", type=int, default=200, help="Adam steps per synthetic batch (default 200)"
    )
    p.add_argument(
        "--synth-batch-size", type=int, default=128, help="images optimised together (default 128)"
    )
    p.add_argument(
        "--epochs", type=int, default=4, help="KD fine-tuning epochs, 0 = calibrate only (default 4)"
    )
    p.add_argument("--steps-per-epoch", type=int, default=50, help="fine-tuning steps per epoch (default 50)")
    p.add_argument(
        "--lr", type=float, default=None, help="fine-tuning learning rate (default: ZeroShotConfig's, 1e-4)"
    )
    p.add_argument("--tune-batch-size", type=int, default=64, help="fine-tuning batch (default 64)")
    p.add_argument(
        "--milestones",
        default=None,
        help="epochs where the fine-tuning lr drops x0.1, e.g. 16,28,36 (default: IntraQ's 16,36,56 of 147, "
        "scaled to --epochs)",
    )
    p.add_argument(
        "--calib-from",
        default=None,
        choices=["bnstats"],
        help="calibrate every zero-shot method's ranges on this method's synthetic set (IntraQ's code "
        "calibrates on BN-statistics generator images and fine-tunes on the IntraQ set); needs it in --methods",
    )
    p.add_argument(
        "--tune-folded",
        action="store_true",
        help="fine-tune with BN already folded (needs --lr ~1e-6) instead of unfolded-then-folded",
    )
    p.add_argument(
        "--no-fold-bn",
        action="store_true",
        help="keep BatchNorm unfolded (IntraQ's student: frozen statistics, trainable affine), all methods",
    )
    p.add_argument("--synthetic-dir", type=Path, default=None, help="keep/reuse synthetic sets here")
    return p.parse_args(argv)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.threads:
        torch.set_num_threads(args.threads)
    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        sys.exit(f"unknown --methods {unknown}; choose from {', '.join(METHODS)}")
    bits = [b.lower() for b in args.bits.split(",") if b]
    recipes = {b: build_recipe(bits=b, calibrator=args.calibrator) for b in bits}
    if args.no_fold_bn:
        recipes = {b: dataclasses.replace(r, fold_bn=False) for b, r in recipes.items()}
    loaded = load_checkpoint(args.checkpoint)
    teacher = loaded.model
    qualities: list[int | None] = [None, *int_list(args.qualities)]
    evals = eval_set(
        loaded, args.data, qualities, max_images=args.max_eval, batch_size=args.batch_size, seed=args.seed
    )
    rows: list[dict[str, Any]] = [
        {"method": "fp32", "bits": None, "seconds": 0.0, "accuracy": accuracy(teacher, evals, args.device)}
    ]
    info: dict[str, Any] = {}
    if "ptq" in methods:
        calib, info["ptq"] = calibration_batches(
            loaded, args.data, args.num_images, args.batch_size, args.seed
        )
        for b, recipe in recipes.items():
            tick = time.perf_counter()
            qmodel = ptq(teacher, recipe, calib)
            seconds = time.perf_counter() - tick
            rows.append(
                {
                    "method": "ptq",
                    "bits": b,
                    "seconds": seconds,
                    "accuracy": accuracy(qmodel, evals, args.device),
                }
            )
            _log(f"ptq {b}: {seconds:.1f}s, top-1 {100 * rows[-1]['accuracy']['stored']['top1']:.2f}%")
    tune = ZeroShotConfig().with_epochs(args.epochs)
    tune = dataclasses.replace(
        tune,
        steps_per_epoch=args.steps_per_epoch,
        batch_size=args.tune_batch_size,
        seed=args.seed,
        device=args.device,
        tune_unfolded=not args.tune_folded,
        **({} if args.lr is None else {"lr": args.lr}),
        **({} if args.milestones is None else {"milestones": int_list(args.milestones)}),
    )
    if args.calib_from and args.calib_from not in methods:
        sys.exit(f"--calib-from {args.calib_from} needs {args.calib_from} in --methods")
    synthetic_sets: dict[str, Any] = {}
    # The calibration source goes first so its set exists when the others need it.
    for method in sorted((m for m in methods if m != "ptq"), key=lambda m: m != args.calib_from):
        config = SynthConfig(
            num=args.num_synthetic,
            batch_size=args.synth_batch_size,
            iterations=args.synth_iters,
            method=method,
            seed=args.seed,
            device=args.device,
        )
        out = args.synthetic_dir / f"{method}.pt" if args.synthetic_dir else None
        tick = time.perf_counter()
        data = synthesize(
            teacher, config, out, resume=out is not None, class_names=loaded.class_names, arch=loaded.arch
        )
        synth_seconds = time.perf_counter() - tick
        info[method] = {
            "synthesis": data.config,
            "synthesis_seconds": synth_seconds,
            "file": str(out) if out else None,
        }
        _log(f"{method}: synthesized {len(data)} images in {synth_seconds:.1f}s")
        synthetic_sets[method] = data
        calib = synthetic_sets[args.calib_from] if args.calib_from else None
        for b, recipe in recipes.items():
            tick = time.perf_counter()
            qmodel = distill_on_synthetic(teacher, recipe, data, tune, calib_synthetic=calib)
            seconds = time.perf_counter() - tick
            rows.append(
                {
                    "method": method,
                    "bits": b,
                    "seconds": seconds,
                    "accuracy": accuracy(qmodel, evals, args.device),
                }
            )
            _log(f"{method} {b}: {seconds:.1f}s, top-1 {100 * rows[-1]['accuracy']['stored']['top1']:.2f}%")
    return {
        "checkpoint": str(args.checkpoint),
        "arch": loaded.arch,
        "data": args.data,
        "eval_images": sum(len(b["label"]) for b in evals[None]),
        "bits": bits,
        "methods": methods,
        "recipes": {b: r.to_dict() for b, r in recipes.items()},
        "zero_shot": tune.to_dict(),
        "info": info,
        "columns": quality_columns(evals),
        "machine": machine(),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "rows": rows,
    }


def markdown(result: dict[str, Any]) -> str:
    bits, rows = result["bits"], result["rows"]
    fp = rows[0]["accuracy"]
    zs = result["zero_shot"]
    tuning = (
        f"Zero-shot fine-tuning: {zs['epochs']} epochs x {zs['steps_per_epoch']} steps of {zs['batch_size']},"
        f" lr {zs['lr']:g}, BN "
        + (
            "unfolded"
            if result["args"].get("no_fold_bn")
            else "folded" + (" before tuning" if result["args"].get("tune_folded") else " after tuning")
        )
        + (
            f", ranges from the {result['args']['calib_from']} set."
            if result["args"].get("calib_from")
            else "."
        )
        if zs["epochs"]
        else "Zero-shot: calibration on the synthetic images only (no fine-tuning)."
    )
    lines = [
        f"{result['arch']} ({result['checkpoint']}) on {result['data']}, {result['eval_images']} validation "
        f"images. {tuning}"
    ]
    for key, header in result["columns"]:
        lines += [
            "",
            f"top-1 % at {header} (FP32: {100 * fp[key]['top1']:.2f})",
            "",
            "| method | data | " + " | ".join(b.upper() for b in bits) + " |",
            "|---|---|" + "---:|" * len(bits),
        ]
        for method in result["methods"]:
            cells = {r["bits"]: r["accuracy"][key]["top1"] for r in rows if r["method"] == method}
            if method == "ptq":
                data = f"{result['info']['ptq']['images']} real"
            else:
                synth = result["info"][method]["synthesis"]
                data = f"{synth['num']} synthetic x {synth['iterations']} it"
            values = " | ".join(f"{100 * cells[b]:.2f}" for b in bits)
            lines.append(f"| {METHODS[method]} | {data} | {values} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return script_main(parse_args, run, markdown, argv)


if __name__ == "__main__":
    main()
