"""DQ vs the VQ baseline vs single-codebook VQ on CIFAR-10 at CPU scale (docs/benchmarks.md, "DQ").

The grid: `dq_ae_cpu` (two levels of K = 32, d = 16) with M in {1, 2, 5} codebooks per level, in the three
bottleneck modes at equal M*K*d (M = 1: the three modes are one model), each for the given seeds. Every run
is `dctq train dq_ae_cpu --data cifar10 ...` in its own folder under --root, resumed when it was cut short,
so the script can be stopped and started again at will; `--lane i --lanes n` runs every n-th run (start one
process per lane).

    .venv/bin/python bench/dq_study.py train --root /work/runs/dq-grid --lane 0 --lanes 2 &
    .venv/bin/python bench/dq_study.py train --root /work/runs/dq-grid --lane 1 --lanes 2 &
    .venv/bin/python bench/dq_study.py collect --root /work/runs/dq-grid --json docs/results/dq_study.json

`collect` (`--partial`: unfinished runs too, at their best epoch so far) reads each run's best.pt (its validation report: bits/dim, code rates, PSNR, usage, perplexity)
and parameter count, prints a markdown table with the mean and the spread over seeds, and lists the runs
that are missing or unfinished together with the command that completes them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CONFIGS = [(1, "dq"), (2, "dq"), (2, "vq"), (2, "single"), (5, "dq"), (5, "vq"), (5, "single")]
"""(M, mode) pairs; M = 1 is the same model in every mode, so it is trained once (as "dq")."""

ARCH = "dq_ae_cpu"
STUDY = {"epochs": 3, "max_steps": 150, "lr": 1e-3, "batch_size": 64}
"""The CPU scale: 3 epochs of 150 steps of 64 images (450 steps, 28,800 images: 0.64 passes over the 45,000
training images), Adam at 1e-3 (the paper's 2e-4 and batch 128 are for 200 full epochs), constant rate,
clip 2, flip augmentation. Sized for 14 runs on 2 cores shared with several other jobs (about 4 CPU-minutes
per run)."""


def run_name(m: int, mode: str, seed: int) -> str:
    return f"m{m}_{mode}_s{seed}"


def runs(seeds: list[int]) -> list[tuple[int, str, int]]:
    return [(m, mode, seed) for seed in seeds for m, mode in CONFIGS]


def train_command(root: Path, m: int, mode: str, seed: int, study: dict[str, Any]) -> list[str]:
    out = root / run_name(m, mode, seed)
    args = [
        "train",
        ARCH,
        "--data",
        "cifar10",
        "--out",
        str(out),
        "--epochs",
        str(study["epochs"]),
        "--max-steps",
        str(study["max_steps"]),
        "--lr",
        str(study["lr"]),
        "--batch-size",
        str(study["batch_size"]),
        "--seed",
        str(seed),
        "--workers",
        "0",
        "--log-every",
        "50",
        "--arch-kwargs",
        json.dumps({"mode": mode, "num_codebooks": m}),
    ]
    if (out / "last.pt").is_file():
        args.append("--resume")
    return args


def _dctq() -> list[str]:
    return [sys.executable, "-c", "from dctq.cli.main import app; app()"]


def cmd_train(args: argparse.Namespace) -> None:
    study = {**STUDY, "epochs": args.epochs}
    todo = runs(args.seeds)[args.lane :: args.lanes]
    for m, mode, seed in todo:
        command = _dctq() + train_command(args.root, m, mode, seed, study)
        print(time.strftime("%H:%M:%S"), " ".join(command[3:]), flush=True)
        done = subprocess.run(command, check=False)
        print(time.strftime("%H:%M:%S"), run_name(m, mode, seed), "exit", done.returncode, flush=True)


def _params(path: Path) -> int:
    from dctq.models import count_params, load_checkpoint

    return count_params(load_checkpoint(path).model)


def _pm(row: dict[str, Any], key: str, digits: int) -> str:
    """The mean of `key`, with ± half the range over seeds when there are several."""
    spread = row[key + "_spread"]
    return f"{row[key]:.{digits}f}" + (f" ± {spread:.{digits}f}" if spread is not None else "")


def cmd_collect(args: argparse.Namespace) -> None:
    import torch

    rows, missing = [], []
    for m, mode, seed in runs(args.seeds):
        out = args.root / run_name(m, mode, seed)
        best = out / "best.pt"
        extra = torch.load(out / "last.pt", weights_only=True)["extra"] if (out / "last.pt").is_file() else {}
        if not best.is_file() or extra.get("epoch") != args.epochs:
            missing.append(
                " ".join(["dctq", *train_command(args.root, m, mode, seed, {**STUDY, "epochs": args.epochs})])
            )
            if not (args.partial and best.is_file()):
                continue
        payload = torch.load(best, weights_only=True)
        val = payload["extra"]["val"]["metrics"]
        rows.append(
            {
                "M": m,
                "mode": mode,
                "seed": seed,
                "params": _params(best),
                "epoch": payload["extra"]["epoch"],
                **val,
            }
        )
    table = []
    for m, mode in CONFIGS:
        group = [r for r in rows if r["M"] == m and r["mode"] == mode]
        if not group:
            continue
        agg: dict[str, Any] = {
            "M": m,
            "mode": mode,
            "seeds": [r["seed"] for r in group],
            "epochs": [r["epoch"] for r in group],
            "params": group[0]["params"],
        }
        for key in (
            "bpd_uniform",
            "bpd_prior",
            "recon_bpd",
            "code_bpd_uniform",
            "code_bpd_prior",
            "psnr_rgb",
            "psnr_y",
        ):
            values = [r[key] for r in group]
            agg[key] = statistics.mean(values)
            agg[key + "_spread"] = (max(values) - min(values)) / 2 if len(values) > 1 else None
        for key in ("usage", "perplexity"):
            levels = list(zip(*[r[key] for r in group], strict=True))
            agg[key] = [statistics.mean(level) for level in levels]
        table.append(agg)
    print(
        "| M | mode | params | bits/dim (uniform) | bits/dim (prior) | recon bits/dim | code bits/dim | PSNR RGB | usage (bottom/top) | perplexity (bottom/top) | seeds | epochs |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---|---|---|---|")
    for a in table:
        print(
            f"| {a['M']} | {a['mode']} | {a['params']:,} | {_pm(a, 'bpd_uniform', 3)} | {_pm(a, 'bpd_prior', 3)} | "
            f"{_pm(a, 'recon_bpd', 3)} | {a['code_bpd_uniform']:.3f} | {_pm(a, 'psnr_rgb', 2)} | "
            f"{' / '.join(f'{100 * u:.0f}%' for u in a['usage'])} | {' / '.join(f'{p:.1f}' for p in a['perplexity'])} | "
            f"{len(a['seeds'])} | {', '.join(str(e) for e in a['epochs'])} |"
        )
    if missing:
        print(f"\n{len(missing)} run(s) missing or unfinished; each completes with (DCTQ_DATA set):")
        for line in missing:
            print("  " + line)
    if args.json:
        result = {
            "study": {
                **STUDY,
                "epochs": args.epochs,
                "arch": ARCH,
                "data": "cifar10 (shared JPEG archive), val split 10% seed 0",
            },
            "machine": {
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "note": "2 cores shared with other jobs",
            },
            "rows": rows,
            "table": table,
            "missing": missing,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("train", "collect"):
        p = sub.add_parser(name)
        p.add_argument("--root", type=Path, required=True, help="folder of the runs (one sub-folder per run)")
        p.add_argument("--seeds", type=lambda s: [int(v) for v in s.split(",")], default=[0, 1])
        p.add_argument("--epochs", type=int, default=STUDY["epochs"])
        if name == "train":
            p.add_argument("--lane", type=int, default=0)
            p.add_argument("--lanes", type=int, default=1)
        else:
            p.add_argument("--json", type=Path, default=None)
            p.add_argument(
                "--partial",
                action="store_true",
                help="also tabulate unfinished runs (their best epoch so far; the epochs column says which)",
            )
    args = parser.parse_args()
    {"train": cmd_train, "collect": cmd_collect}[args.command](args)


if __name__ == "__main__":
    main()
