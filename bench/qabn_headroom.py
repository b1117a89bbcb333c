"""QABN headroom: how much would per-quality BatchNorm statistics help a trained model?

QSAM's QABN gives every base JPEG quality its own BN branch. Before paying for one, measure what
that can buy at most on the statistics side: for each quality, top-1 with the model's own BN
statistics and with BN statistics re-estimated on `--num-images` training images re-compressed at
that quality (exact averages over those images, the weights untouched): with the run's training
augmentation ("per-quality", the first measurement), without it (what `dctq adapt-bn` does), and, as a
control, without it on the files as stored (the training quality). A model trained on the quality
mix that gains nothing here leaves QABN only its per-branch affine parameters to work with.

    .venv/bin/python bench/qabn_headroom.py runs/q_mix/best.pt --qualities 10,30,50,90
    .venv/bin/python bench/qabn_headroom.py runs/dct_plain/best.pt --json headroom.json

The checkpoint must come from `dctq train` (its saved training config gives the data split, so the
statistics come from training images and the evaluation from its validation images). Prints a
markdown table; --json writes the numbers.
"""

from __future__ import annotations

import argparse
import copy
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dctq import __version__
from dctq.calibration.bn_stats import reestimate_bn
from dctq.calibration.train.config import saved_train_config
from dctq.calibration.train.data import build_train_data, dataset_for_arch
from dctq.common.errors import ModelError
from dctq.jpeg.batch import model_inputs
from dctq.jpeg.dataset import make_loader
from dctq.jpeg.recompress import QualityPolicy
from dctq.models.checkpoint import load_checkpoint
from dctq.models.metrics import topk_correct

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_common: the bench folder is no package
from bench_common import int_list, script_main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path, help="FP checkpoint written by `dctq train`")
    p.add_argument("--data", default="cifar10", help="the run's data: 'cifar10' or an ImageFolder of JPEGs")
    p.add_argument("--qualities", default="10,30,50,90", help="JPEG qualities (default 10,30,50,90)")
    p.add_argument(
        "--num-images", type=int, default=3000, help="training images per re-estimate (default 3000)"
    )
    p.add_argument("--batch-size", type=int, default=250, help="batch of the re-estimate and evaluation")
    p.add_argument("--seed", type=int, default=0, help="seed of the training-image draw")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    return p.parse_args(argv)


@torch.no_grad()
def top1(model: nn.Module, batches: list[dict[str, torch.Tensor]]) -> float:
    model.eval()
    correct = sum(
        int(topk_correct(model(*model_inputs(b, torch.device("cpu"))), b["label"], (1,))[0]) for b in batches
    )
    return correct / sum(len(b["label"]) for b in batches)


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    loaded = load_checkpoint(args.checkpoint)
    config = saved_train_config(loaded.extra)
    if config is None:
        raise ModelError(
            f"{args.checkpoint} holds no training config; give a checkpoint written by `dctq train`"
        )
    data = build_train_data(args.data, config)
    generator = torch.Generator().manual_seed(args.seed)
    picks = torch.randperm(len(data.train), generator=generator)[: args.num_images].tolist()
    train_samples = [data.split.samples("train")[i] for i in picks]

    def plain_batches(quality: int | None) -> list[dict[str, torch.Tensor]]:
        # the training images as `dctq adapt-bn` reads them: no augmentation, re-compressed at `quality`
        view = dataset_for_arch(
            loaded.arch,
            data.split.root,
            train_samples,
            train=False,
            policy=QualityPolicy(test_quality=quality),
        )
        return list(make_loader(view, args.batch_size, shuffle=False, num_workers=0))

    stored = reestimate_bn(loaded.model, plain_batches(None))
    rows = []
    for quality in int_list(args.qualities):
        train_view = copy.copy(data.train)
        train_view.qualities = QualityPolicy(train_qualities=(quality,))
        train_view.reseed(args.seed)
        subset = torch.utils.data.Subset(train_view, picks)
        stat_batches = list(make_loader(subset, args.batch_size, shuffle=False, num_workers=0))
        val_view = copy.copy(data.val)
        val_view.qualities = QualityPolicy(test_quality=quality)
        val_batches = list(make_loader(val_view, args.batch_size, shuffle=False, num_workers=0))
        tick = time.perf_counter()
        own = top1(loaded.model, val_batches)
        per_quality = top1(reestimate_bn(loaded.model, stat_batches), val_batches)
        plain = top1(reestimate_bn(loaded.model, plain_batches(quality)), val_batches)
        rows.append(
            {
                "quality": quality,
                "own_bn_top1": own,
                "per_quality_bn_top1": per_quality,
                "gain": per_quality - own,
                "plain_bn_top1": plain,
                "stored_bn_top1": top1(stored, val_batches),
                "seconds": time.perf_counter() - tick,
            }
        )
        print(
            f"q{quality}: own BN {100 * own:.2f}%, per-quality BN {100 * per_quality:.2f}% "
            f"(without augmentation {100 * plain:.2f}%)",
            flush=True,
        )
    return {
        "checkpoint": str(args.checkpoint),
        "arch": loaded.arch,
        "train_qualities": list(config.train_qualities) if config.train_qualities else None,
        "num_images": len(picks),
        "eval_images": len(data.val),
        "rows": rows,
        "machine": {"platform": platform.platform(), "threads": args.threads, "dctq": __version__},
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"{result['checkpoint']} ({result['arch']}, trained on qualities {result['train_qualities'] or 'as stored'}); "
        f"BN statistics from {result['num_images']} training images, {result['eval_images']} validation images",
        "",
        "| quality | own BN statistics | per-quality BN statistics | gain | per-quality, no augmentation "
        "(`adapt-bn`) | as stored, no augmentation |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['quality']} | {100 * r['own_bn_top1']:.2f} | {100 * r['per_quality_bn_top1']:.2f} | "
            f"{100 * r['gain']:+.2f} | {100 * r['plain_bn_top1']:.2f} | {100 * r['stored_bn_top1']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return script_main(parse_args, run, markdown, argv)


if __name__ == "__main__":
    main()
