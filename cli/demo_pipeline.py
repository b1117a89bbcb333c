"""The `dctq demo` pipeline as a library function: every stage of dctq on a built-in toy data set.

It lives beside the CLI because it is the one place that joins training (calibration/) and export
(deploy/), which must not import each other; it prints nothing and returns a DemoReport. The folder it
fills is a run folder `dctq report` renders: fp32/ (training, with its metrics.csv), int8.pt and
int8.metrics.csv (PTQ), fp32.onnx and int8.onnx, eval/*.metrics.csv (accuracy per quality) and
profile.profile.json (FP32 and INT8 in ONNX Runtime).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..calibration.quant.recipe import build_recipe
from ..calibration.train.config import TrainConfig
from ..calibration.train.data import build_train_data, dataset_for_arch
from ..calibration.train.loop import train
from ..calibration.workflow.plan import PtqData
from ..calibration.workflow.quantize import quantize_checkpoint
from ..common.errors import DctqError
from ..common.files import write_text_atomic
from ..common.records import write_metrics
from ..deploy.evaluate import EvalReport, evaluate
from ..deploy.export.onnx import export_onnx
from ..deploy.onnx.lint import lint_qdq
from ..deploy.predict import artifact_predictor
from ..deploy.profiling.latency import ProfileReport, profile
from ..jpeg.demo_data import make_demo_folder
from ..jpeg.recompress import QualityPolicy
from ..models.checkpoint import load_checkpoint

DEMO_ARCH = "dct_cifar_upsampling"
DEMO_QUALITIES = (20, 50, 90)


@dataclasses.dataclass(frozen=True)
class DemoReport:
    """What `run_demo` made and measured; paths inside `out`."""

    out: Path
    data: Path
    fp32_checkpoint: Path
    int8_checkpoint: Path
    onnx: Path
    fp32: EvalReport
    int8_torch: EvalReport
    int8_ort: EvalReport
    lint_errors: int
    lint_warnings: int
    ort_profile: ProfileReport
    fp32_ort_profile: ProfileReport | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "data": str(self.data),
            "fp32_checkpoint": str(self.fp32_checkpoint),
            "int8_checkpoint": str(self.int8_checkpoint),
            "onnx": str(self.onnx),
            "fp32": self.fp32.to_dict(),
            "int8_torch": self.int8_torch.to_dict(),
            "int8_ort": self.int8_ort.to_dict(),
            "lint": {"errors": self.lint_errors, "warnings": self.lint_warnings},
            "ort_profile": self.ort_profile.to_dict(),
            "fp32_ort_profile": self.fp32_ort_profile.to_dict() if self.fp32_ort_profile else None,
        }


def run_demo(
    out: Path,
    *,
    epochs: int = 15,
    per_class: int = 200,
    seed: int = 0,
    stage: Callable[[str], None] | None = None,
) -> DemoReport:
    """Make the toy data set in out/data, train the CIFAR-size DCT net, evaluate it per JPEG quality,
    quantize it to INT8 (entropy PTQ on training images), export Q/DQ ONNX, lint it against TensorRT's
    rules, evaluate it in ONNX Runtime and profile it. `stage(name)` is called as each stage starts.

    Raises DctqError (e.g. `out` holding an earlier demo's run: pick a new --out or delete it).
    """
    if epochs < 1 or per_class < 1:
        raise DctqError(f"--epochs and --per-class must be >= 1, got {epochs}, {per_class}")
    note = stage or (lambda _name: None)
    out = Path(out)
    run_dir = out / "fp32"
    if (run_dir / "last.pt").exists():
        raise DctqError(f"{out} already holds a demo run; delete it or pass another --out")
    note("writing the toy data set")
    data = make_demo_folder(out / "data", per_class=per_class, seed=seed)
    note("training")
    config = TrainConfig(
        arch=DEMO_ARCH, epochs=epochs, batch_size=32, lr=0.05, seed=seed, augment="flip", num_workers=0
    )
    data_sets = build_train_data(data, config)
    result = train(config, data_sets.train, data_sets.val, run_dir)
    fp32_ckpt = result.best_path
    splits = data_sets.split
    samples = splits.samples("val")

    def factory(quality: int | None):
        return dataset_for_arch(
            DEMO_ARCH, splits.root, samples, train=False, policy=QualityPolicy(test_quality=quality)
        )

    note("evaluating FP32")
    fp32 = evaluate(load_checkpoint(fp32_ckpt), factory, list(DEMO_QUALITIES), batch_size=64, device="cpu")
    write_metrics(out / "eval" / "fp32.metrics.csv", fp32.rows)
    note("quantizing (INT8 PTQ, entropy calibrator)")
    int8_ckpt = out / "int8.pt"
    quantized = quantize_checkpoint(
        fp32_ckpt,
        int8_ckpt,
        method="ptq",
        recipe=build_recipe(bits="w8a8", calibrator="entropy"),
        calib=PtqData(data, num_images=128, seed=seed),
        device="cpu",
    )
    int8_torch = evaluate(
        load_checkpoint(quantized.path), factory, list(DEMO_QUALITIES), batch_size=64, device="cpu"
    )
    write_metrics(out / "eval" / "int8_torch.metrics.csv", int8_torch.rows)
    note("exporting Q/DQ ONNX and checking it against TensorRT's rules")
    onnx_path = export_onnx(load_checkpoint(quantized.path), out / "int8.onnx")
    lint = lint_qdq(onnx_path)
    note("evaluating and profiling in ONNX Runtime")
    runner, _art = artifact_predictor(onnx_path, "ort")
    int8_ort = evaluate(runner, factory, list(DEMO_QUALITIES), batch_size=64, device="cpu")
    write_metrics(out / "eval" / "int8_ort.metrics.csv", int8_ort.rows)
    fp32_onnx = export_onnx(load_checkpoint(fp32_ckpt), out / "fp32.onnx")
    fp32_prof = profile(fp32_onnx, "ort", batches=(1, 8, 32), warmup=3, iters=20)
    prof = profile(onnx_path, "ort", batches=(1, 8, 32), warmup=3, iters=20)
    profiles = [fp32_prof.to_dict(), prof.to_dict()]
    write_text_atomic(out / "profile.profile.json", json.dumps(profiles, indent=2) + "\n")
    return DemoReport(
        out=out,
        data=data,
        fp32_checkpoint=fp32_ckpt,
        int8_checkpoint=quantized.path,
        onnx=onnx_path,
        fp32=fp32,
        int8_torch=int8_torch,
        int8_ort=int8_ort,
        lint_errors=len(lint.errors),
        lint_warnings=len(lint.warnings),
        ort_profile=prof,
        fp32_ort_profile=fp32_prof,
    )
