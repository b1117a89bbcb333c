"""Paired comparison of two checkpoints on the same validation images: is the difference real?

Two models scored on the same images disagree on a few of them; McNemar's exact test asks whether
"A right, B wrong" (b) and "A wrong, B right" (c) are as likely as a fair coin would make them.
Prints both top-1 values, the difference with its 95% interval (paired, normal approximation) and
the two-sided exact p-value. Much tighter than comparing two independent +-0.7-point errors.

    .venv/bin/python bench/paired_accuracy.py intraq_w4a4.pt bnstats_w4a4.pt --data cifar10
    .venv/bin/python bench/paired_accuracy.py a.pt b.pt --quality 10 --json paired.json
    .venv/bin/python bench/paired_accuracy.py a.pt b.pt --qualities 10,20,30,40,50
    .venv/bin/python bench/paired_accuracy.py a.pt b.pt --qualities 10,30,50,70,90 --mean-over 50,70,90

With --qualities, one paired row per quality and a row for the mean over them: each image's
difference is averaged over the qualities first (the qualities share images, so their rows are not
independent), and the interval and p-value come from those per-image means (normal approximation).

Both checkpoints (FP or quantized dctq `.pt`) must read the same input kind (DCT or RGB) and classes;
the split is the first checkpoint's (its training config's val_fraction, else 10%, seed 0).
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
from pathlib import Path
from typing import Any

import torch

from dctq import __version__
from dctq.calibration.train.config import saved_val_fraction
from dctq.calibration.train.data import dataset_for_arch
from dctq.common.errors import DataError
from dctq.deploy.evaluate import as_runner
from dctq.jpeg.dataset import make_loader
from dctq.jpeg.recompress import QualityPolicy
from dctq.jpeg.splits import split_data
from dctq.models.checkpoint import LoadedCheckpoint, load_checkpoint
from dctq.models.registry import get_model_info

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_common: the bench folder is no package
from bench_common import int_list, script_main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("a", type=Path, help="first checkpoint (.pt)")
    p.add_argument("b", type=Path, help="second checkpoint (.pt)")
    p.add_argument("--data", default="cifar10", help="'cifar10' or an ImageFolder of JPEGs (default cifar10)")
    p.add_argument(
        "--quality", type=int, default=None, help="re-compress at this JPEG quality (default: as stored)"
    )
    p.add_argument(
        "--qualities",
        type=int_list,
        default=None,
        help="several qualities, e.g. 10,20,30: a paired row each and one for their mean",
    )
    p.add_argument(
        "--mean-over",
        type=int_list,
        default=None,
        help="with --qualities: one more mean row over this subset of them, e.g. 50,60,70,80,90,95",
    )
    p.add_argument("--batch-size", type=int, default=250, help="evaluation batch (default 250)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    return p.parse_args(argv)


def mcnemar_exact_p(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: P(a Binomial(b + c, 1/2) count at least as uneven as b vs c)."""
    n, k = b + c, min(b, c)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_summary(correct_a: torch.Tensor, correct_b: torch.Tensor) -> dict[str, Any]:
    """Top-1 of each, the difference a - b with a paired 95% interval, the discordant counts and p-value."""
    if correct_a.shape != correct_b.shape or correct_a.numel() == 0:
        raise DataError(
            f"need two equal, non-empty correctness vectors, got {correct_a.shape} and {correct_b.shape}"
        )
    a, b_ = correct_a.bool(), correct_b.bool()
    n = a.numel()
    only_a, only_b = int((a & ~b_).sum()), int((~a & b_).sum())
    diff = (only_a - only_b) / n
    # Variance of the mean of d_i in {-1, 0, 1}: E[d^2] - E[d]^2, over n.
    se = math.sqrt(max((only_a + only_b) / n - diff**2, 0.0) / n)
    return {
        "images": n,
        "top1_a": float(a.float().mean()),
        "top1_b": float(b_.float().mean()),
        "diff": diff,
        "ci95": [diff - 1.96 * se, diff + 1.96 * se],
        "only_a_right": only_a,
        "only_b_right": only_b,
        "p_value": mcnemar_exact_p(only_a, only_b),
    }


def mean_summary(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, Any]:
    """The mean over qualities of a - b, from per-image differences averaged over the qualities first.

    pairs: one (correct_a, correct_b) per quality, all over the same images in the same order.
    """
    a = torch.stack([pa.float() for pa, _ in pairs])  # [qualities, images]
    b = torch.stack([pb.float() for _, pb in pairs])
    if a.shape != b.shape or a.numel() == 0:
        raise DataError(
            f"need equal, non-empty correctness vectors, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    per_image = (a - b).mean(dim=0)
    n = per_image.numel()
    diff = float(per_image.mean())
    se = float(per_image.std(unbiased=True)) / math.sqrt(n) if n > 1 else 0.0
    z = abs(diff) / se if se > 0 else (math.inf if diff else 0.0)
    return {
        "images": n,
        "qualities": len(pairs),
        "top1_a": float(a.mean()),
        "top1_b": float(b.mean()),
        "diff": diff,
        "ci95": [diff - 1.96 * se, diff + 1.96 * se],
        "p_value": math.erfc(z / math.sqrt(2)),  # two-sided normal
    }


@torch.no_grad()
def correctness(
    models: tuple[LoadedCheckpoint, ...], dataset: torch.utils.data.Dataset, batch_size: int
) -> list[torch.Tensor]:
    """Per-image top-1 hits of every model, all scored on each batch as it is read (one decode pass)."""
    predictors = [as_runner(m, "cpu") for m in models]
    hits: list[list[torch.Tensor]] = [[] for _ in models]
    for batch in make_loader(dataset, batch_size, shuffle=False, num_workers=0):
        for predict, out in zip(predictors, hits, strict=True):
            out.append(predict(batch).argmax(dim=1).cpu() == batch["label"])
    return [torch.cat(h) for h in hits]


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    first, second = load_checkpoint(args.a), load_checkpoint(args.b)
    if first.class_names != second.class_names:
        raise DataError(f"{args.a} and {args.b} were trained on different classes; compare like with like")
    kinds = {get_model_info(m.arch).input_kind for m in (first, second)}
    if len(kinds) > 1:
        raise DataError(
            f"{args.a} and {args.b} read different inputs ({' vs '.join(sorted(kinds))}); pair like with like"
        )
    if args.qualities is not None and args.quality is not None:
        raise DataError("give --quality or --qualities, not both")
    subset = list(args.mean_over or [])
    if subset and not set(subset) <= set(args.qualities or []):
        raise DataError(f"--mean-over {subset} must be a subset of --qualities {args.qualities}")
    split = split_data(args.data, saved_val_fraction(first.extra))

    def scored(quality: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        policy = QualityPolicy(test_quality=quality)
        dataset = dataset_for_arch(first.arch, split.root, split.samples("val"), train=False, policy=policy)
        hits_a, hits_b = correctness((first, second), dataset, args.batch_size)
        return hits_a, hits_b

    head = {"a": str(args.a), "b": str(args.b), "data": args.data}
    machine = {"platform": platform.platform(), "dctq": __version__}
    if args.qualities is None:
        return {**head, "quality": args.quality, **paired_summary(*scored(args.quality)), "machine": machine}
    pairs = [scored(q) for q in args.qualities]
    rows = [{"quality": q, **paired_summary(*pair)} for q, pair in zip(args.qualities, pairs, strict=True)]
    result = {**head, "qualities": args.qualities, "rows": rows, "mean": mean_summary(pairs)}
    if subset:
        by_quality = dict(zip(args.qualities, pairs, strict=True))
        result["mean_over"] = {**mean_summary([by_quality[q] for q in subset]), "over": subset}
    return {**result, "machine": machine}


def markdown(r: dict[str, Any]) -> str:
    if "rows" in r:
        lines = [
            f"A: {r['a']}  B: {r['b']}  ({r['mean']['images']} images)",
            "",
            "| quality | A top-1 % | B top-1 % | A - B (95% interval) | only A / only B right | p |",
            "|---|---:|---:|---|---:|---:|",
        ]
        means = [{**r["mean"], "quality": "mean"}]
        if "mean_over" in r:
            subset = ",".join(map(str, r["mean_over"]["over"]))
            means.append({**r["mean_over"], "quality": f"mean {subset}"})
        for row in [*r["rows"], *means]:
            lo, hi = row["ci95"]
            counts = f"{row['only_a_right']} / {row['only_b_right']}" if "only_a_right" in row else "-"
            lines.append(
                f"| {row['quality']} | {100 * row['top1_a']:.2f} | {100 * row['top1_b']:.2f} | "
                f"{100 * row['diff']:+.2f} ({100 * lo:+.2f} .. {100 * hi:+.2f}) | {counts} | {row['p_value']:.3g} |"
            )
        return "\n".join(lines)
    lo, hi = r["ci95"]
    return "\n".join(
        [
            f"| {r['images']} images, quality {r['quality'] or 'as stored'} | top-1 % |",
            "|---|---:|",
            f"| A: {r['a']} | {100 * r['top1_a']:.2f} |",
            f"| B: {r['b']} | {100 * r['top1_b']:.2f} |",
            f"| A - B (95% interval) | {100 * r['diff']:+.2f} ({100 * lo:+.2f} .. {100 * hi:+.2f}) |",
            f"| only A right / only B right | {r['only_a_right']} / {r['only_b_right']} |",
            f"| McNemar exact p | {r['p_value']:.3g} |",
        ]
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return script_main(parse_args, run, markdown, argv)


if __name__ == "__main__":
    main()
