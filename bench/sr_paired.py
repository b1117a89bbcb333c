"""Paired comparison of SR models on the same images: per-image PSNR differences with a 95% interval.

Every model is scored on every image of the sets (Set5 and Set14 by default, PSNR / SSIM on Y with the
scale border cropped, `dctq evaluate`'s numbers), then each model after the first is compared with the
first (the baseline) image by image: mean difference B - A over the pooled images of all sets, its 95%
interval (Student t on the per-image differences, n - 1 degrees of freedom: Set5 alone has 5 images, so the
sets are pooled for the test), how many images B wins, and the mean per set.

    .venv/bin/python bench/sr_paired.py qat_w4a4.pt odm_w4a4.pt [more.pt ...] --data set5,set14 --json r.json
    .venv/bin/python bench/sr_paired.py a.eval.json b.eval.json      # reuse `dctq evaluate --json --out` reports
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
from pathlib import Path
from typing import Any

import torch

from dctq import __version__
from dctq.common.errors import DataError
from dctq.deploy.sr import evaluate_sr

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_common: the bench folder is no package
from bench_common import script_main

# Two-sided 95% quantiles of Student's t for small n - 1 (pooled Set5 + Set14 has 19 images); the normal
# 1.96 beyond the table.
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
       11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
       20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000}  # fmt: skip


def t95(dof: int) -> float:
    """The two-sided 95% t quantile for `dof` degrees of freedom (the next smaller tabulated one)."""
    if dof < 1:
        return math.inf
    return T95.get(dof) or T95[max(k for k in T95 if k <= dof)] if dof <= 60 else 1.96


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "models",
        nargs="+",
        type=Path,
        help="SR artifacts (.pt, .onnx) or `dctq evaluate --json` reports; the first is the baseline",
    )
    p.add_argument("--names", default=None, help="comma-separated row names (default: the file names)")
    p.add_argument("--data", default="set5,set14", help="evaluation sets (default set5,set14)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    return p.parse_args(argv)


def scores_of(path: Path, data: list[str]) -> dict[str, Any]:
    """{"sets": {set: {image: (psnr, ssim)}}, "means": {set: (psnr, ssim)}} of one model or report."""
    if path.suffix == ".json":
        report = json.loads(path.read_text(encoding="utf-8"))
    else:
        report = evaluate_sr(path, data).to_dict()
    sets = {s["name"]: {i["name"]: (i["psnr"], i["ssim"]) for i in s["per_image"]} for s in report["sets"]}
    return {"sets": sets, "means": {s["name"]: (s["psnr"], s["ssim"]) for s in report["sets"]}}


def paired(base: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """Pooled per-image PSNR differences other - base: mean, sd, 95% interval, wins."""
    diffs = []
    for name, images in base["sets"].items():
        if name not in other["sets"] or set(other["sets"][name]) != set(images):
            raise DataError(f"the two models were not scored on the same images of {name}")
        diffs += [other["sets"][name][i][0] - images[i][0] for i in sorted(images)]
    d = torch.tensor(diffs, dtype=torch.float64)
    n = d.numel()
    mean = float(d.mean())
    sd = float(d.std(unbiased=True)) if n > 1 else 0.0
    half = t95(n - 1) * sd / math.sqrt(n) if n > 1 else math.inf
    return {
        "images": n,
        "diff_db": mean,
        "sd_db": sd,
        "ci95_db": [mean - half, mean + half],
        "wins": int((d > 0).sum()),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    data = [d for d in args.data.split(",") if d]
    names = args.names.split(",") if args.names else [p.stem for p in args.models]
    if len(names) != len(args.models):
        raise DataError(f"--names has {len(names)} names for {len(args.models)} models")
    scores = [scores_of(p, data) for p in args.models]
    rows = []
    for name, path, s in zip(names, args.models, scores, strict=True):
        row = {
            "name": name,
            "model": str(path),
            "sets": {k: {"psnr": v[0], "ssim": v[1]} for k, v in s["means"].items()},
        }
        if s is not scores[0]:
            row["vs_first"] = paired(scores[0], s)
        rows.append(row)
    return {
        "baseline": names[0],
        "data": data,
        "rows": rows,
        "per_image_psnr": {n: s["sets"] for n, s in zip(names, scores, strict=True)},
        "versions": {"dctq": __version__, "torch": torch.__version__, "python": platform.python_version()},
    }


def markdown(result: dict[str, Any]) -> str:
    sets = result["data"]
    head = (
        "| model | "
        + " | ".join(f"{s} PSNR / SSIM" for s in sets)
        + f" | vs {result['baseline']}: dB [95% CI], wins |"
    )
    lines = [head, "|---|" + "---:|" * (len(sets) + 1)]
    for row in result["rows"]:
        cells = [f"{row['sets'][s]['psnr']:.3f} / {row['sets'][s]['ssim']:.4f}" for s in sets]
        vs = row.get("vs_first")
        cells.append(
            f"{vs['diff_db']:+.3f} [{vs['ci95_db'][0]:+.3f}, {vs['ci95_db'][1]:+.3f}], {vs['wins']}/{vs['images']}"
            if vs
            else "-"
        )
        lines.append(f"| {row['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    script_main(parse_args, run, markdown)
