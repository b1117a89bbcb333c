"""GPU speed of the DCT ResNets against the RGB baseline: network latency per batch size, then
end-to-end images/s from JPEG bytes to predictions. Writes gpu_speed.md and gpu_speed.json.

Network part (deploy.cuda_profile.profile_cuda): the PyTorch backend, FP16 autocast by default,
batches 1/32/256; inputs leave pinned host memory in their wire form (int16 coefficients + FP32
tables, or uint8 pixels) and the time is split into H2D / compute / D2H with CUDA events.
End-to-end part (profile_end_to_end): the same in-memory JPEGs (synthetic photos-like images, 4:2:0,
quality 90, 256 px, centre-cropped to the model's size) through each model's own input path:
coefficients read in threads + int16 upload for DCT models, Pillow decode + uint8 upload for RGB.

    python bench/gpu_speed.py                               # H100: results into $OUT (or ./bench-results)
    python bench/gpu_speed.py --compile --out results/      # torch.compile'd models
    python bench/gpu_speed.py --device cpu --size 32 --baseline resnet20 --batches 1,4 --iters 3 \\
        --e2e-images 32 --precision fp32                    # a CPU smoke run of the script itself
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dctq.common.files import write_text_atomic
from dctq.deploy.profiling.cuda import ProfileConfig, prepare_model, profile_cuda, profile_end_to_end
from dctq.deploy.profiling.gpu_input import dct_h2d_bytes, rgb_h2d_bytes
from dctq.models import count_macs, create_model, list_models


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--out", type=Path, default=None, help="output folder (default $OUT, else ./bench-results)"
    )
    p.add_argument("--device", default="cuda")
    p.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp16")
    p.add_argument("--compile", action="store_true", help="torch.compile every model (slow first batches)")
    p.add_argument("--batches", default="1,32,256", help="comma-separated batch sizes")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--iters", type=int, default=50)
    p.add_argument("--size", type=int, default=224, help="input size of the models compared (default 224)")
    p.add_argument("--baseline", default="resnet50", help="RGB model the ratios are taken against")
    p.add_argument("--models", default="*", help="pattern among the DCT models of --size")
    p.add_argument("--e2e-images", type=int, default=2048, help="JPEGs for the end-to-end run (0: skip)")
    p.add_argument("--e2e-batch", type=int, default=128)
    p.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1), help="JPEG reader threads")
    return p.parse_args(argv)


def synthetic_jpegs(n: int, size: int, seed: int = 0) -> list[bytes]:
    """n photo-like JPEGs (low-pass noise + gradients), size x size, 4:2:0, quality 90."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    out = []
    for _ in range(n):
        small = rng.uniform(0, 255, (size // 16, size // 16, 3)).astype(np.uint8)
        img = np.asarray(Image.fromarray(small).resize((size, size), Image.BICUBIC)).astype(np.float32)
        img[..., 0] += 40 * np.sin(xx / rng.uniform(4, 12))
        img[..., 1] += 40 * np.cos(yy / rng.uniform(4, 12))
        buf = io.BytesIO()
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(
            buf, format="JPEG", quality=90, subsampling=2
        )
        out.append(buf.getvalue())
    return out


def environment(device: torch.device) -> dict[str, object]:
    env: dict[str, object] = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env["gpu"] = props.name
        env["compute_capability"] = f"{props.major}.{props.minor}"
    return env


def run(args: argparse.Namespace) -> dict[str, object]:
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    batches = tuple(int(b) for b in args.batches.split(","))
    config = ProfileConfig(
        batch_sizes=batches,
        warmup=args.warmup,
        iters=args.iters,
        precision=args.precision,
        compile=args.compile,
        device=args.device,
        channels_last=device.type == "cuda",
    )
    names = [args.baseline] + [
        i.name for i in list_models(args.models) if i.input_kind == "dct" and i.input_size == args.size
    ]
    jpegs = synthetic_jpegs(args.e2e_images, args.size + 32) if args.e2e_images else []
    results = []
    for name in names:
        model = create_model(name).eval()
        macs = count_macs(model)
        prepared = prepare_model(model, config)
        print(f"[gpu_speed] {name}: network", file=sys.stderr)
        rows = profile_cuda(model, config, prepared=prepared)
        entry: dict[str, object] = {
            "model": name,
            "input_kind": model.input_kind,
            "gmacs": macs / 1e9,
            "network": [r.to_dict() for r in rows],
        }
        if jpegs:
            print(f"[gpu_speed] {name}: end to end on {len(jpegs)} JPEGs", file=sys.stderr)
            e2e = profile_end_to_end(
                model,
                jpegs,
                batch_size=args.e2e_batch,
                config=config,
                workers=args.workers,
                prepared=prepared,
            )
            entry["end_to_end"] = e2e.to_dict()
        results.append(entry)
        del model, prepared
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return {
        "environment": environment(device),
        "config": {**vars(args), "out": str(args.out)},
        "h2d_bytes_per_image": {
            "dct": dct_h2d_bytes(args.size, args.size),
            "rgb": rgb_h2d_bytes(args.size, args.size),
        },
        "results": results,
    }


def markdown(report: dict) -> str:
    env, cfg, results = report["environment"], report["config"], report["results"]
    base = {r["batch"]: r["images_per_second"] for r in results[0]["network"]}
    lines = [
        f"# GPU speed: DCT models vs {results[0]['model']}",
        "",
        f"{env.get('gpu', cfg['device'])} (CC {env.get('compute_capability', '-')}), torch {env['torch']}, "
        f"CUDA {env['cuda']}; {cfg['precision']}{' autocast' if cfg['precision'] != 'fp32' else ''}, {'torch.compile' if cfg['compile'] else 'eager'}; "
        f"p50 over {cfg['iters']} iterations after {cfg['warmup']} warm-up.",
        "",
        "## Network (pinned host inputs in wire form -> logits on the host)",
        "",
        "| model | GMACs | batch | p50 ms | p90 ms | p99 ms | H2D p50 | compute p50 | D2H p50 | images/s | x baseline |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        for row in r["network"]:
            t = row["total"]
            lines.append(
                f"| {r['model']} | {r['gmacs']:.3f} | {row['batch']} | {t['p50']:.3f} | {t['p90']:.3f} | {t['p99']:.3f} "
                f"| {row['h2d']['p50']:.3f} | {row['compute']['p50']:.3f} | {row['d2h']['p50']:.3f} "
                f"| {row['images_per_second']:.0f} | {row['images_per_second'] / base[row['batch']]:.2f} |"
            )
    if any("end_to_end" in r for r in results):
        h2d = report["h2d_bytes_per_image"]
        lines += [
            "",
            f"## End to end: JPEG bytes -> predictions ({cfg['e2e_images']} JPEGs, batch {cfg['e2e_batch']}, "
            f"{cfg['workers']} reader threads)",
            "",
            f"H2D bytes per image: DCT {h2d['dct']:,} (int16 coefficients + FP32 tables), RGB {h2d['rgb']:,} (uint8).",
            "",
            "| model | input | images/s | x baseline | reader wait s | H2D us/image |",
            "|---|---|---:|---:|---:|---:|",
        ]
        e2e_base = results[0].get("end_to_end", {}).get("images_per_second", float("nan"))
        for r in results:
            e = r.get("end_to_end")
            if e:
                lines.append(
                    f"| {r['model']} | {e['pipeline']} | {e['images_per_second']:.0f} | "
                    f"{e['images_per_second'] / e2e_base:.2f} | {e['transfers']['decode_seconds']:.2f} | "
                    f"{e['transfers']['h2d_us_per_image']:.1f} |"
                )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = args.out or Path(os.environ.get("OUT") or "bench-results")
    report = run(args)
    write_text_atomic(out / "gpu_speed.json", json.dumps(report, indent=2) + "\n")
    write_text_atomic(out / "gpu_speed.md", markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
