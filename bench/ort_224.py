"""ONNX Runtime INT8 against FP32 at deployment size: 224-px models, batch 1 and 32, 1 and 2 threads.

For each architecture a fresh model (torch.manual_seed(0), untrained: speed does not depend on the
weights) is saved as a checkpoint with the class folders of the calibration set, then
bench/ort_int8.py's code exports FP32 and the two INT8 Q/DQ graphs (PTQ, entropy calibrator, on
`--num-images` 224x224 photographs made by bench/photos.py: enough to give every quantizer a range;
the accuracy of an untrained model is meaningless) and times them interleaved, loaded by the `ort`
backend (its load-time rewrite included), once per thread count. The optimized graph's integer and
float op counts come with every row.

    OMP_NUM_THREADS=2 nice -n 10 .venv/bin/python bench/ort_224.py --archs resnet50,dct_late_concat_rfa_thinner \\
        --threads 1,2 --batches 1,32 --rounds 3 --iters 2 --json docs/results/ort_224.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from dctq.common.files import write_text_atomic
from dctq.models.checkpoint import save_checkpoint
from dctq.models.registry import create_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ort_int8
from bench_common import int_list
from photos import photo_set


def fresh_checkpoint(arch: str, classes: list[str], path: Path) -> Path:
    torch.manual_seed(0)
    model = create_model(arch, num_classes=len(classes)).eval()
    return save_checkpoint(
        path, model, arch=arch, arch_kwargs={"num_classes": len(classes)}, class_names=classes
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", default="resnet50,dct_late_concat_rfa_thinner", help="comma-separated")
    p.add_argument("--threads", type=int_list, default=[1, 2])
    p.add_argument("--batches", type=int_list, default=[1, 32])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--iters", type=int, default=2)
    p.add_argument("--num-images", type=int, default=16)
    p.add_argument("--work", type=Path, default=None, help="keep photos, checkpoints and ONNX files here")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="dctq_ort224_") as tmp_name:
        tmp = Path(tmp_name)
        work = args.work or tmp / "work"
        calib = work / "photos224"
        photo_set(calib, max(16, args.num_images), (224, 224))
        classes = sorted(d.name for d in calib.iterdir() if d.is_dir())
        for arch in args.archs.split(","):
            ckpt = fresh_checkpoint(arch, classes, work / arch / "fp32.pt")
            ns = argparse.Namespace(
                checkpoint=ckpt,
                calib=str(calib),
                num_images=args.num_images,
                batches=args.batches,
                rounds=args.rounds,
                iters=args.iters,
                warmup=1,
                threads=max(args.threads),
                seed=0,
                out_dir=work / arch,
                json=None,
            )
            ns.agreement = False  # untrained weights: the logits' agreement says nothing here
            files = {v: work / arch / f"{v}.onnx" for v in ort_int8.VARIANTS}
            if all(f.exists() for f in files.values()):  # an earlier run's exports of the same seed
                models = {v: {"path": f, "lint": None} for v, f in files.items()}
            else:
                models = ort_int8.build_models(ns, work / arch)
            for threads in args.threads:
                ns.threads = threads
                print(f"{arch}: timing with {threads} thread(s)", file=sys.stderr, flush=True)
                result = ort_int8.run(ns, work / arch, tmp, models)
                result["arch"] = arch
                for m in result["models"].values():
                    m["lint"] = None  # the lint reports are in the exports
                results.append(result)
                print(f"### {arch}, {threads} thread(s)\n\n{ort_int8.markdown(result)}\n", flush=True)
                if args.json:  # after every result: a long run keeps what it has measured
                    write_text_atomic(args.json, json.dumps({"results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
