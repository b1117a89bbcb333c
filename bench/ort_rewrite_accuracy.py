"""Accuracy of one exported INT8 .onnx in ONNX Runtime under each form of the `ort` backend's rewrite.

The TensorRT-form graph (Q/DQ on the residual input of Adds only) is loaded by the `ort` backend
with `add_scale` None (the Adds left in float: what the file defines, up to ORT's integer rounding)
and with each of rewrite_for_ort's ADD_SCALES (a Q/DQ added on the conv input of every residual
Add so ORT fuses QLinearConv + QLinearAdd: one extra rounding). Optional `--both FILE`: the graph
exported with `--add-inputs both` (its own calibrated Q/DQ there), and `--fp32 FILE`. Every variant
runs on the same validation images (the checkpoint's own split, files as stored) and the optimized
graph's integer/float op counts are read as bench/ort_ops.py does.

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

from dctq.common.files import write_text_atomic
from dctq.deploy.artifact import load_artifact
from dctq.deploy.backends.ort import OrtRunner
from dctq.deploy.evaluate import evaluate
from dctq.deploy.onnx.ort_rewrite import ADD_SCALES
from dctq.jpeg.recompress import QualityPolicy
from dctq.jpeg.splits import make_dataset, split_data

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ort_ops import count_ops, kernel_summary


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

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, path, options) in enumerate(variants(args)):
            opt = Path(tmp) / f"{i}.onnx"
            runner = OrtRunner(load_artifact(path), threads=args.threads, optimized_model_path=opt, **options)
            t0 = time.perf_counter()
            report = evaluate(runner, factory, None, batch_size=args.batch_size)
            row = report.rows[0]
            stats = runner.rewrite_stats
            rows.append(
                {
                    "variant": name,
                    "file": str(path),
                    "top1": row.top1,
                    "images": row.images,
                    "seconds": time.perf_counter() - t0,
                    "add_inputs_quantized": stats.add_inputs_quantized if stats else 0,
                    "kernels": kernel_summary(count_ops(opt)),
                }
            )
            k = rows[-1]["kernels"]
            print(
                f"| {name} | {100 * row.top1:.2f} | {k['QLinearConv']} | {k['QLinearAdd']} | "
                f"{k['float_conv']} |",
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
