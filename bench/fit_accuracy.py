"""What each way of fitting a larger photograph into a DCT model's input costs, in accuracy and in time.

A DCT model reads a grid of a fixed size; a photograph larger than that must be brought to it. The three
ways dctq has (jpeg/input_policy.py), measured on a model we can score:
- `crop`: centre crop on the block grid at the file's own scale (the reader keeps only those blocks:
  no resize, cheapest; the model sees the middle 1/F^2 of the picture at F times the scale it trained on);
- `dct`: downscale by 1/F in the DCT domain (F = 2, 4, 8; exact on the block grid up to one re-quantization
  with the file's own tables), no decode;
- `pixels`: decode, resize (antialiased bilinear), re-encode with the file's own tables, read (the exact view).
Proxy for "a photograph F times the model's input": the model's validation images upscaled F times (Pillow
bicubic) and re-encoded at `--quality` (4:2:0). `native` scores the original files. Each method is paired
against `pixels` on the same images (McNemar's exact test, bench/paired_accuracy.py), and timed per image
(process CPU time of the fit alone, median of `--rounds` interleaved passes over the first 200 files).

    .venv/bin/python bench/fit_accuracy.py ../shared/models/cifar10/dct_cifar_deconv.pt --data cifar10 \\
        --factors 2,4 --json docs/results/fit_accuracy.json
"""

from __future__ import annotations

import argparse
import io
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from dctq import __version__
from dctq.calibration.train.config import saved_val_fraction
from dctq.common.errors import DataError
from dctq.deploy.backends.pytorch import TorchRunner
from dctq.deploy.predict import fit_input, stack_inputs
from dctq.jpeg.input_policy import InputPolicy
from dctq.jpeg.splits import split_data
from dctq.models.checkpoint import load_checkpoint
from dctq.models.registry import get_model_info

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_common: the bench folder is no package
from bench_common import int_list, script_main
from paired_accuracy import paired_summary

METHODS = ("crop", "dct", "pixels")
TIMED_FILES = 200


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "checkpoint", type=Path, help="FP DCT checkpoint (.pt) of a model that reads files of its own size"
    )
    p.add_argument("--data", default="cifar10", help="'cifar10' or an ImageFolder of JPEGs (default cifar10)")
    p.add_argument("--factors", type=int_list, default=[2], help="upscale factors, powers of two (default 2)")
    p.add_argument("--quality", type=int, default=75, help="JPEG quality of the upscaled files (default 75)")
    p.add_argument("--max-images", type=int, default=None, help="first N validation images (default all)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved timing passes (default 3)")
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    return p.parse_args(argv)


def upscaled(data: bytes, factor: int, quality: int) -> bytes:
    """A JPEG `factor` times the size of `data` (bicubic), 4:2:0 at `quality`."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        rgb = img.convert("RGB")
    big = rgb.resize((rgb.width * factor, rgb.height * factor), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    big.save(out, format="JPEG", quality=quality, subsampling=2)
    return out.getvalue()


def policies(size: int) -> dict[str, InputPolicy]:
    return {
        "native": InputPolicy("dct", size),
        "crop": InputPolicy("dct", size),
        "dct": InputPolicy("dct", size, resize=size, dct_resize="dct"),
        "pixels": InputPolicy("dct", size, resize=size, dct_resize="pixels"),
    }


def hits(
    runner: Callable[[dict[str, Any]], torch.Tensor],
    files: list[bytes],
    labels: torch.Tensor,
    policy: InputPolicy,
    batch_size: int,
) -> tuple[torch.Tensor, list[str]]:
    """Per-image top-1 hits under `policy`, and the fit methods used (to check the plan was the one asked)."""
    out, methods = [], []
    for start in range(0, len(files), batch_size):
        fitted = [fit_input(b, policy) for b in files[start : start + batch_size]]
        methods += [fit.method for _, fit in fitted]
        batch = {k: torch.from_numpy(v) for k, v in stack_inputs([inputs for inputs, _ in fitted]).items()}
        out.append(runner(batch).argmax(dim=1).cpu() == labels[start : start + batch_size])
    return torch.cat(out), methods


def fit_ms(files: list[bytes], named: dict[str, InputPolicy], rounds: int) -> dict[str, float]:
    """Median CPU ms per file of fitting each policy, passes interleaved."""
    times: dict[str, list[float]] = {name: [] for name in named}
    for _ in range(rounds):
        for name, policy in named.items():
            t0 = time.process_time()
            for data in files:
                fit_input(data, policy)
            times[name].append(1e3 * (time.process_time() - t0) / len(files))
    return {name: statistics.median(v) for name, v in times.items()}


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    for factor in args.factors:
        if factor < 2 or factor & (factor - 1) or factor > 8:
            raise DataError(f"--factors takes 2, 4 or 8 (the DCT-domain downscales), got {factor}")
    ckpt = load_checkpoint(args.checkpoint)
    info = get_model_info(ckpt.arch)
    if info.input_kind != "dct":
        raise DataError(
            f"{args.checkpoint} is an {info.input_kind} model; this bench compares DCT-input fits"
        )
    split = split_data(args.data, saved_val_fraction(ckpt.extra))
    samples = split.samples("val")[: args.max_images]
    originals = [s.path.read_bytes() for s in samples]
    labels = torch.tensor([s.label for s in samples])
    runner = TorchRunner(ckpt, device="cpu")
    named = policies(info.input_size)
    native, _ = hits(runner, originals, labels, named["native"], args.batch_size)
    rows: list[dict[str, Any]] = [{"factor": 1, "method": "native", "top1": float(native.float().mean())}]
    for factor in args.factors:
        files = [upscaled(b, factor, args.quality) for b in originals]
        scored = {}
        for method in METHODS:
            correct, used = hits(runner, files, labels, named[method], args.batch_size)
            expected = {"crop": "none", "dct": f"dct/{factor}", "pixels": "pixels"}[method]
            if set(used) != {expected}:
                raise DataError(f"{method} at x{factor} fitted by {sorted(set(used))}, expected {expected}")
            scored[method] = correct
        ms = fit_ms(files[:TIMED_FILES], {m: named[m] for m in METHODS}, args.rounds)
        for method in METHODS:
            paired = paired_summary(scored[method], scored["pixels"])
            rows.append(
                {
                    "factor": factor,
                    "method": method,
                    "top1": float(scored[method].float().mean()),
                    "vs_pixels": {k: paired[k] for k in ("diff", "ci95", "p_value")},
                    "fit_ms": ms[method],
                }
            )
    return {
        "checkpoint": str(args.checkpoint),
        "data": args.data,
        "images": len(samples),
        "quality": args.quality,
        "rows": rows,
        "machine": {"platform": platform.platform(), "dctq": __version__, "threads": args.threads},
    }


def markdown(r: dict[str, Any]) -> str:
    lines = [
        f"{r['checkpoint']}: {r['images']} validation images, upscaled files at quality {r['quality']}",
        "",
        "| photo size | fit | top-1 % | vs pixels (95% interval) | p | fit CPU ms / image |",
        "|---|---|---:|---|---:|---:|",
    ]
    for row in r["rows"]:
        size = "the model's own" if row["factor"] == 1 else f"x{row['factor']}"
        if "vs_pixels" in row:
            lo, hi = row["vs_pixels"]["ci95"]
            d = row["vs_pixels"]["diff"]
            pair = f"{100 * d:+.2f} ({100 * lo:+.2f} .. {100 * hi:+.2f})"
            p, ms = f"{row['vs_pixels']['p_value']:.3g}", f"{row['fit_ms']:.3f}"
        else:
            pair, p, ms = "-", "-", "-"
        lines.append(f"| {size} | {row['method']} | {100 * row['top1']:.2f} | {pair} | {p} | {ms} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return script_main(parse_args, run, markdown, argv)


if __name__ == "__main__":
    main()
