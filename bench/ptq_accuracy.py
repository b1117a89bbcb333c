"""PTQ accuracy: top-1 of an FP checkpoint and of its INT8 PTQ models, one per calibrator, per JPEG quality.

Calibration: `--num-images` images drawn (seeded) from the *training* split of `--data` (the split the
FP checkpoint was trained on, same val_fraction and seed), files as stored; the same images for
every calibrator. Evaluation: the checkpoint's validation split (or `--max-eval` of it, drawn
seeded), as stored (CIFAR-10: IJG quality 75) and re-compressed at each of `--qualities`. Every
model sees the same cached batches.

    .venv/bin/python bench/ptq_accuracy.py runs/dct_plain/best.pt                        # CIFAR-10, CPU
    .venv/bin/python bench/ptq_accuracy.py best.pt --qualities 10,20,30,50,90 --num-images 1024 --json ptq.json
    .venv/bin/python bench/ptq_accuracy.py best.pt --max-eval 64 --num-images 32           # smoke run

Prints a markdown table (rows: FP32 and one PTQ model per calibrator; columns: qualities and their
mean) and, with --json, writes every number (top-1, top-5, loss per quality, calibration seconds).
zeroshot_accuracy.py imports the shared helpers from here.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dctq import __version__
from dctq.calibration.calibrators.registry import CALIBRATORS
from dctq.calibration.ptq import ptq
from dctq.calibration.quant.recipe import build_recipe
from dctq.calibration.train.config import saved_val_fraction
from dctq.calibration.train.data import dataset_for_arch
from dctq.calibration.workflow.data import calibration_loader
from dctq.deploy.evaluate import as_runner, evaluate_loader
from dctq.jpeg.dataset import make_loader
from dctq.jpeg.recompress import QualityPolicy
from dctq.jpeg.splits import split_data
from dctq.models.checkpoint import LoadedCheckpoint, load_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_common: the bench folder is no package
from bench_common import int_list, script_main

EvalSet = dict[int | None, list[dict[str, torch.Tensor]]]
"""quality (None: as stored) -> the cached evaluation batches."""


def common_args(p: argparse.ArgumentParser) -> None:
    """Options both accuracy benchmarks share."""
    p.add_argument("checkpoint", type=Path, help="FP dctq checkpoint (.pt)")
    p.add_argument("--data", default="cifar10", help="'cifar10' or an ImageFolder of JPEGs (default cifar10)")
    p.add_argument("--num-images", type=int, default=512, help="PTQ calibration images (default 512)")
    p.add_argument("--max-eval", type=int, default=None, help="evaluate on this many validation images")
    p.add_argument("--batch-size", type=int, default=256, help="evaluation / calibration batch (default 256)")
    p.add_argument("--seed", type=int, default=0, help="seed of the image draws, synthesis and fine-tuning")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_args(p)
    p.add_argument(
        "--qualities",
        default="10,30,50",
        help="re-compression qualities besides the stored files (default 10,30,50)",
    )
    p.add_argument(
        "--calibrators", default=",".join(CALIBRATORS), help="calibrators to compare (default all)"
    )
    p.add_argument("--bits", default="w8a8", help="bit widths of the PTQ models (default w8a8)")
    return p.parse_args(argv)


def eval_set(
    loaded: LoadedCheckpoint,
    data: str,
    qualities: list[int | None],
    *,
    max_images: int | None,
    batch_size: int,
    seed: int,
) -> EvalSet:
    """The checkpoint's validation split (or a seeded subset), re-compressed at each quality, in memory."""
    split = split_data(data, saved_val_fraction(loaded.extra))
    samples = split.samples("val")
    if max_images is not None and max_images < len(samples):
        rng = np.random.default_rng(seed)
        samples = [samples[i] for i in sorted(rng.choice(len(samples), max_images, replace=False).tolist())]
    out: EvalSet = {}
    for q in qualities:
        dataset = dataset_for_arch(
            loaded.arch, split.root, samples, train=False, policy=QualityPolicy(test_quality=q)
        )
        out[q] = list(make_loader(dataset, batch_size, shuffle=False))
    return out


def stored_quality(batches: list[dict[str, torch.Tensor]]) -> int | None:
    """The most common (estimated IJG) quality of the stored files."""
    counts = Counter(int(v) for b in batches for v in b["quality"].tolist() if int(v) > 0)
    return counts.most_common(1)[0][0] if counts else None


def accuracy(model: nn.Module, evals: EvalSet, device: str) -> dict[str, dict[str, float]]:
    """{quality label: {top1, top5, loss, images}} ("stored" for the files as stored)."""
    predict = as_runner(model, device)
    out = {}
    for q, batches in evals.items():
        row = evaluate_loader(predict, batches, quality=q)  # type: ignore[arg-type]
        out["stored" if q is None else str(q)] = {
            "top1": row.top1,
            "top5": row.top5,
            "loss": row.loss,
            "images": row.images,
        }
    return out


def calibration_batches(
    loaded: LoadedCheckpoint, data: str, num_images: int, batch_size: int, seed: int
) -> tuple[list[dict[str, torch.Tensor]], dict[str, Any]]:
    """`num_images` training-split images as cached batches (the same for every model), and their info."""
    loader, info = calibration_loader(loaded, data, num_images=num_images, batch_size=batch_size, seed=seed)
    return list(loader), info


def machine() -> dict[str, Any]:
    return {
        "dctq": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def quality_columns(evals: EvalSet) -> list[tuple[str, str]]:
    """(key, header) per evaluated quality: ("stored", "stored (q75)"), ("10", "q10"), ..."""
    cols = []
    for q, batches in evals.items():
        if q is None:
            sq = stored_quality(batches)
            cols.append(("stored", f"stored (q{sq})" if sq else "stored"))
        else:
            cols.append((str(q), f"q{q}"))
    return cols


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = load_checkpoint(args.checkpoint)
    qualities: list[int | None] = [None, *int_list(args.qualities)]
    tick = time.perf_counter()
    evals = eval_set(
        loaded, args.data, qualities, max_images=args.max_eval, batch_size=args.batch_size, seed=args.seed
    )
    calib, calib_info = calibration_batches(loaded, args.data, args.num_images, args.batch_size, args.seed)
    data_seconds = time.perf_counter() - tick
    rows = [
        {
            "model": "FP32",
            "calibrator": None,
            "seconds": 0.0,
            "accuracy": accuracy(loaded.model, evals, args.device),
        }
    ]
    for name in [c for c in args.calibrators.split(",") if c]:
        recipe = build_recipe(bits=args.bits, calibrator=name)
        tick = time.perf_counter()
        qmodel = ptq(loaded.model, recipe, calib)
        seconds = time.perf_counter() - tick
        rows.append(
            {
                "model": f"PTQ {args.bits.upper()} {name}",
                "calibrator": name,
                "recipe": recipe.to_dict(),
                "seconds": seconds,
                "accuracy": accuracy(qmodel, evals, args.device),
            }
        )
        print(f"{rows[-1]['model']}: calibrated in {seconds:.1f}s", flush=True)
    return {
        "checkpoint": str(args.checkpoint),
        "arch": loaded.arch,
        "data": args.data,
        "eval_images": sum(len(b["label"]) for b in evals[None]),
        "calibration": calib_info,
        "columns": quality_columns(evals),
        "data_seconds": data_seconds,
        "machine": machine(),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "rows": rows,
    }


def markdown(result: dict[str, Any]) -> str:
    cols = result["columns"]
    lines = [
        f"{result['arch']} ({result['checkpoint']}) on {result['data']}: top-1 % on {result['eval_images']} "
        f"validation images; PTQ calibrated on {result['calibration']['images']} training images",
        "",
        "| model | " + " | ".join(h for _, h in cols) + " | mean | calibration s |",
        "|---|" + "---:|" * (len(cols) + 2),
    ]
    for r in result["rows"]:
        top1 = [100 * r["accuracy"][k]["top1"] for k, _ in cols]
        cells = " | ".join(f"{v:.2f}" for v in top1)
        lines.append(f"| {r['model']} | {cells} | {sum(top1) / len(top1):.2f} | {r['seconds']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return script_main(parse_args, run, markdown, argv)


if __name__ == "__main__":
    main()
