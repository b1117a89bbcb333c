"""Accuracy of one exported INT8 .onnx in ONNX Runtime under each form of the `ort` backend's rewrite.

The TensorRT-form graph (Q/DQ on the residual input of Adds only) is loaded by the `ort` backend
with `add_scale` None (the Adds left in float: what the file defines, up to ORT's integer rounding)
and with each of rewrite_for_ort's ADD_SCALES (a Q/DQ added on the conv input of every residual
Add so ORT fuses QLinearConv + QLinearAdd: one extra rounding). Optional `--both FILE`: the graph
exported with `--add-inputs both` (its own calibrated Q/DQ there), and `--fp32 FILE`. Every variant
runs on the same validation images (the checkpoint's own split, files as stored) and the optimized
graph's integer/float op counts are read as bench/ort_ops.py does. Each variant is compared, image by
image, with the file as exported (Adds in float): images gained / lost and the exact McNemar p.

    DCTQ_DATA=/work/shared/data OMP_NUM_THREADS=1 .venv/bin/python bench/ort_rewrite_accuracy.py \\
        q_residual.onnx --both q_both.onnx --fp32 fp32.onnx --data cifar10 --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dctq.common.files import write_text_atomic
from dctq.deploy.artifact import load_artifact
from dctq.deploy.backends.ort import OrtRunner
from dctq.deploy.onnx.ort_rewrite import ADD_SCALES
from dctq.jpeg.dataset import make_loader
from dctq.jpeg.recompress import QualityPolicy
from dctq.jpeg.splits import make_dataset, split_data

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ort_ops import count_ops, kernel_summary


def mcnemar_p(gained: int, lost: int) -> float:
    """Two-sided exact McNemar p-value: the discordant pairs against a fair coin."""
    from math import comb

    n, k = gained + lost, min(gained, lost)
    return 1.0 if n == 0 else min(1.0, 2 * sum(comb(n, i) for i in range(k + 1)) / 2**n)


def variants(args: argparse.Namespace) -> list[tuple[str, Path, dict[str, Any]]]:
    out: list[tuple[str, Path, dict[str, Any]]] = []
    if args.fp32:
        out.append(("fp32", args.fp32, {}))
    out.append(("trt_form, Adds in float (add_scale None)", args.onnx, {"add_scale": None}))
    out += [(f"trt_form, add_scale {s}", args.onnx, {"add_scale": s}) for s in ADD_SCALES]
    if args.both:
        out.append(("exported --add-inputs both", args.both, {}))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("onnx", type=Path, help="INT8 .onnx in TensorRT form (--add-inputs residual)")
    p.add_argument("--both", type=Path, default=None, help="the same model exported with --add-inputs both")
    p.add_argument("--fp32", type=Path, default=None, help="the FP32 .onnx of the model")
    p.add_argument("--data", default="cifar10", help="'cifar10' or an ImageFolder (default cifar10)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="the training run's (default 0.1)")
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    meta = load_artifact(args.onnx).meta
    splits = split_data(args.data, args.val_fraction)
    samples = splits.samples("val")

    def factory(quality: int | None) -> Any:
        return make_dataset(
            meta.input_kind,
            meta.input_size,
            splits.root,
            samples,
            train=False,
            policy=QualityPolicy(test_quality=quality),
        )

    batches = list(make_loader(factory(None), args.batch_size, shuffle=False))  # read once, reused
    labels = torch.cat([b["label"] for b in batches]).numpy()
    rows, correct = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, path, options) in enumerate(variants(args)):
            opt = Path(tmp) / f"{i}.onnx"
            runner = OrtRunner(load_artifact(path), threads=args.threads, optimized_model_path=opt, **options)
            t0 = time.perf_counter()
            pred = torch.cat([runner.predict(b).argmax(1) for b in batches]).numpy()
            correct[name] = pred == labels
            stats = runner.rewrite_stats
            rows.append(
                {
                    "variant": name,
                    "file": str(path),
                    "top1": float(correct[name].mean()),
                    "images": len(labels),
                    "seconds": time.perf_counter() - t0,
                    "add_inputs_quantized": stats.add_inputs_quantized if stats else 0,
                    "kernels": kernel_summary(count_ops(opt)),
                }
            )
    exact = correct.get("trt_form, Adds in float (add_scale None)")
    for row in rows:  # paired against the file as exported: images right in one and wrong in the other
        c = correct[row["variant"]]
        gained, lost = int(np.sum(c & ~exact)), int(np.sum(~c & exact))
        row["vs_exported_form"] = {"gained": gained, "lost": lost, "mcnemar_p": mcnemar_p(gained, lost)}
        k = row["kernels"]
        print(
            f"| {row['variant']} | {100 * row['top1']:.2f} | {gained} / {lost} | "
            f"{row['vs_exported_form']['mcnemar_p']:.2f} | {k['QLinearConv']} | {k['QLinearAdd']} | {k['float_conv']} |",
            flush=True,
        )
    if args.json:
        write_text_atomic(
            args.json,
            json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=2) + "\n",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
