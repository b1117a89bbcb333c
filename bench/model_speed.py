"""Forward throughput of the ImageNet-size DCT ResNets against the RGB ResNet-50, in one run.

Network only: inputs are random tensors already on the device (no JPEG reading, no decoding), so
the ratio is the network's speed-up, not the pipeline's. Every round times one batch of every model
in turn (interleaved, so background load and clock changes hit all models alike); the table shows
the median over rounds.

    .venv/bin/python bench/model_speed.py --batch 8 --rounds 5                 # CPU, fp32
    .venv/bin/python bench/model_speed.py --device cuda --dtype fp16 --batch 64 --rounds 50
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from dctq.common.files import write_text_atomic
from dctq.models import count_macs, count_params, create_model, example_inputs, get_model_info, list_models

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8, help="images per forward pass (default 8)")
    p.add_argument("--rounds", type=int, default=5, help="timed forward passes per model (median reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed passes per model first")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    p.add_argument("--channels-last", action="store_true", help="NHWC memory format (helps on GPUs)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--models", default="*", help="name pattern among the 224-pixel models (default all)")
    p.add_argument("--baseline", default="resnet50", help="the model ratios are taken against")
    p.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    return p.parse_args(argv)


def _prepare(name: str, batch: int, device: torch.device, dtype: torch.dtype, channels_last: bool):
    model = create_model(name).eval()
    stats = {"params": count_params(model), "macs": count_macs(model)}
    model = model.to(device=device, dtype=dtype)
    inputs = example_inputs(model, batch, device=device)
    inputs = tuple(t.to(dtype) for t in inputs)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        inputs = tuple(t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t for t in inputs)
    return model, inputs, stats


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(args: argparse.Namespace) -> list[dict]:
    device = torch.device(args.device)
    dtype = DTYPES[args.dtype]
    if device.type == "cpu" and dtype == torch.float16:
        sys.exit("fp16 is for CUDA; use --dtype fp32 or bf16 on CPU")
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    names = [args.baseline] + [
        i.name for i in list_models(args.models) if i.input_size == 224 and i.name != args.baseline
    ]
    prepared = {n: _prepare(n, args.batch, device, dtype, args.channels_last) for n in names}
    times: dict[str, list[float]] = {n: [] for n in names}
    with torch.inference_mode():
        for model, inputs, _ in prepared.values():
            for _ in range(args.warmup):
                model(*inputs)
        _sync(device)
        for _ in range(args.rounds):
            for name, (model, inputs, _) in prepared.items():
                _sync(device)
                start = time.perf_counter()
                model(*inputs)
                _sync(device)
                times[name].append(time.perf_counter() - start)
    base = statistics.median(times[args.baseline])
    base_macs = prepared[args.baseline][2]["macs"]
    rows = []
    for name in names:
        med = statistics.median(times[name])
        stats = prepared[name][2]
        rows.append(
            {
                "model": name,
                "input": get_model_info(name).input_kind,
                "params": stats["params"],
                "macs": stats["macs"],
                "ms_per_batch": 1000 * med,
                "images_per_s": args.batch / med,
                "speedup": base / med,
                "mac_ratio": base_macs / stats["macs"],
            }
        )
    return rows


def markdown(rows: list[dict], args: argparse.Namespace) -> str:
    threads = torch.get_num_threads()
    device = (
        torch.cuda.get_device_name(torch.device(args.device)) if args.device.startswith("cuda") else "CPU"
    )
    lines = [
        f"device {device} ({platform.processor() or platform.machine()}, {threads} threads), torch {torch.__version__}, "
        f"{args.dtype}, batch {args.batch}, median of {args.rounds} interleaved rounds, network only",
        "",
        f"| model | input | params (M) | GMACs | ms/batch | images/s | speed-up vs {args.baseline} | MAC ratio |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['input']} | {r['params'] / 1e6:.2f} | {r['macs'] / 1e9:.2f} | "
            f"{r['ms_per_batch']:.1f} | {r['images_per_s']:.1f} | {r['speedup']:.2f}x | {r['mac_ratio']:.2f}x |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    rows = run(args)
    print(markdown(rows, args))
    if args.json:
        write_text_atomic(
            args.json, json.dumps({"args": {**vars(args), "json": str(args.json)}, "rows": rows}, indent=2)
        )


if __name__ == "__main__":
    main()
