"""The DQ autoencoder deployed, on CIFAR-10's validation split (docs/benchmarks.md, "DQ: deployment"):

1. ONNX: export the encoder and decoder (`dctq export`), run both in ONNX Runtime over the validation
   images and compare with PyTorch: codes identical (count and share), largest pixel difference of the
   decoded mean, and the bits/dim / PSNR each gives.
2. PTQ W8A8 of the autoencoder's convolutions (`dctq quantize --method ptq`, the default recipe: per-channel
   weights, per-tensor activations, entropy... as QuantRecipe's defaults), calibrated on `--num-images`
   training images: bits/dim and PSNR against FP32, and how many codes change.
3. `dctq profile` of the exported encoder on ONNX Runtime (one thread), batch 1 and 32.

    .venv/bin/python bench/dq_deploy.py /work/runs/dq-grid/m5_dq_s0/best.pt --json docs/results/dq_deploy.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from dctq.calibration.train.config import saved_val_fraction
from dctq.calibration.workflow.plan import PtqData
from dctq.calibration.workflow.quantize import quantize_checkpoint
from dctq.deploy.autoencode import evaluate_autoencoder, load_codec
from dctq.deploy.export.formats import export_artifact
from dctq.deploy.profiling.latency import profile
from dctq.jpeg.dataset import make_loader
from dctq.jpeg.recompress import QualityPolicy
from dctq.jpeg.splits import make_dataset, split_data
from dctq.models.checkpoint import load_checkpoint


def compare_codes(
    a_path: Path, b_path: Path, data: str, val_fraction: float, max_images: int | None
) -> dict[str, Any]:
    """Codes and decoded pixels of two codecs over the validation images."""
    a, b = load_codec(a_path), load_codec(b_path)
    split = split_data(data, val_fraction)
    samples = split.samples("val")[:max_images]
    dataset = make_dataset("rgb", a.input_size, split.root, samples, train=False, policy=QualityPolicy())
    same = total = images_same = images = 0
    max_pixel = 0.0
    for batch in make_loader(dataset, 250, shuffle=False):
        x = batch["x"]
        ca, cb = a.encode(x), b.encode(x)
        equal = torch.stack([(p == q).flatten(1).all(1) for p, q in zip(ca, cb, strict=True)]).all(0)
        same += sum(int((p == q).sum()) for p, q in zip(ca, cb, strict=True))
        total += sum(p.numel() for p in ca)
        images_same += int(equal.sum())
        images += x.shape[0]
        pa, _ = a.decode(ca)
        pb, _ = b.decode(ca)  # the same codes through both decoders
        max_pixel = max(max_pixel, float((pa - pb).abs().max()))
    return {
        "images": images,
        "codes": total,
        "codes_identical": same,
        "images_all_codes_identical": images_same,
        "max_abs_pixel_difference_same_codes": max_pixel,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data", default="cifar10")
    parser.add_argument("--num-images", type=int, default=512, help="PTQ calibration images (training split)")
    parser.add_argument("--max-images", type=int, default=None, help="validation images (default: all)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    loaded = load_checkpoint(args.checkpoint)
    fraction = saved_val_fraction(loaded.extra)
    result: dict[str, Any] = {
        "checkpoint": str(args.checkpoint),
        "arch": loaded.arch,
        "arch_kwargs": loaded.arch_kwargs,
    }

    def report(path: Path) -> dict[str, Any]:
        tick = time.perf_counter()
        rep = evaluate_autoencoder(path, args.data, val_fraction=fraction, max_images=args.max_images)
        return {**rep.rows[0][1], "params": rep.params, "seconds": time.perf_counter() - tick}

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        export_artifact(args.checkpoint, "onnx", tmp / "ae.onnx")
        encoder = tmp / "ae.encoder.onnx"
        result["fp32_torch"] = report(args.checkpoint)
        result["fp32_ort"] = report(encoder)
        result["onnx_vs_torch"] = compare_codes(
            args.checkpoint, encoder, args.data, fraction, args.max_images
        )
        print(json.dumps({k: result[k] for k in ("onnx_vs_torch",)}, indent=1), flush=True)
        q = tmp / "q.pt"
        tick = time.perf_counter()
        quantize_checkpoint(
            args.checkpoint, q, method="ptq", calib=PtqData(args.data, num_images=args.num_images)
        )
        result["ptq_seconds"] = time.perf_counter() - tick
        result["ptq_recipe"] = load_checkpoint(q).extra.get("quant_recipe")
        result["int8_torch"] = report(q)
        result["int8_vs_fp32_codes"] = compare_codes(args.checkpoint, q, args.data, fraction, args.max_images)
        prof = profile(encoder, "ort", (1, 32), warmup=5, iters=50, threads=1)
        result["encoder_profile_ort_1thread"] = prof.to_dict()
    for key in ("fp32_torch", "fp32_ort", "int8_torch"):
        r = result[key]
        print(
            f"{key}: bits/dim {r['bpd_uniform']} (prior {r['bpd_prior']}), PSNR {r['psnr_rgb']:.3f} / {r['psnr_y']:.3f}"
        )
    print(json.dumps(result["int8_vs_fp32_codes"]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
