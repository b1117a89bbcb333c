"""ONNX Runtime INT8 against FP32 on the CPU: latency of one checkpoint's graphs, measured in one run.

From one FP checkpoint this exports three ONNX graphs: FP32, and INT8 Q/DQ from PTQ (entropy
calibrator, `--num-images` images of `--calib`) with Q/DQ on the shortcut input of residual Adds
only (recipe add_inputs="residual", the TensorRT form) and on both Add inputs ("both", which ONNX
Runtime needs to fuse those convs into QLinearConv). Each is loaded by the `ort` backend's own code
(`load_runner(..., "ort", threads=...)`: CPUExecutionProvider, ORT_ENABLE_ALL, the INT8 graphs
through `rewrite_for_ort`), then every batch size runs interleaved rounds (FP32, residual, both,
FP32, ...; `--iters` timed calls each) on one fixed random batch, so background load and clock
changes hit all three alike. Reported: median latency over all timed calls, images/s and the speed
ratio against FP32 of the same run.

Whether integer kernels ran is read from ORT's optimized graph (a second session of each model
with `optimized_model_path` set, into a temporary folder): QLinearConv / ConvInteger / QLinearAdd
counts against float Conv. Both INT8 graphs are also linted against TensorRT's Q/DQ rules
(`lint_qdq`: 0 errors required; warnings reported), and their logits on the timed batch compared
with FP32's (SQNR dB, top-1 agreement), a check that the rewrite kept the function.

Inputs: DCT models get y/cbcr as integer-valued floats (a Laplacian per frequency, wide at DC and
narrow at high frequencies, divided by IJG quality-75 steps and rounded: a stand-in for real files,
not a measured distribution; the CPU kernels' speed does not depend on the values) and qt from the
IJG quality-75 tables; RGB models standard-normal pixels.

    OMP_NUM_THREADS=1 .venv/bin/python bench/ort_int8.py /tmp/ddb/fp32/best.pt --calib /tmp/ddb/data \\
        --rounds 3 --iters 10
    .venv/bin/python bench/ort_int8.py runs/dct_plain/best.pt --calib cifar10 --batches 1,32,128 \\
        --threads 2 --out-dir /tmp/ort_int8 --json ort_int8.json

Prints a markdown table (and the results as JSON); `--json FILE` writes them with every lint
violation and rewrite statistic. Exits with status 1 when an INT8 graph has lint errors.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dctq import __version__
from dctq.calibration.quant.recipe import build_recipe
from dctq.calibration.workflow.plan import PtqData
from dctq.calibration.workflow.quantize import quantize_checkpoint
from dctq.common.errors import DctqError
from dctq.common.files import write_text_atomic
from dctq.deploy.artifact import ArtifactMeta, load_artifact
from dctq.deploy.backends.registry import load_runner
from dctq.deploy.export.onnx import export_onnx
from dctq.deploy.onnx.lint import lint_qdq
from dctq.jpeg.quality import ijg_qt
from dctq.models.checkpoint import load_checkpoint

sys.path.insert(
    0, str(Path(__file__).resolve().parent)
)  # bench_common, ort_ops: the bench folder is no package
from bench_common import int_list
from ort_ops import kernel_summary, optimized_ops

VARIANTS = ("fp32", "int8_residual", "int8_both")
"""Model names in the tables, in the order of every timing round."""
ADD_INPUTS = {"int8_residual": "residual", "int8_both": "both"}
QUALITY = 75


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", type=Path, help="FP dctq checkpoint (.pt)")
    p.add_argument("--calib", required=True, help="PTQ images: an ImageFolder of JPEGs or 'cifar10'")
    p.add_argument("--num-images", type=int, default=256, help="PTQ calibration images (default 256)")
    p.add_argument("--batches", type=int_list, default=[1, 32], help="batch sizes (default 1,32)")
    p.add_argument("--rounds", type=int, default=7, help="interleaved rounds per batch size (default 7)")
    p.add_argument("--iters", type=int, default=50, help="timed calls per model per round (default 50)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls per model per batch size (default 3)")
    p.add_argument("--threads", type=int, default=1, help="ORT intra-op threads (and torch's; default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration draw and the inputs")
    p.add_argument("--out-dir", type=Path, default=None, help="keep the checkpoints and ONNX files here")
    p.add_argument("--json", type=Path, default=None, help="also write every result to this JSON file")
    args = p.parse_args(argv)
    if not args.batches or min(args.batches) < 1 or args.rounds < 1 or args.iters < 1 or args.warmup < 0:
        p.error("--batches must be >= 1, --rounds and --iters >= 1, --warmup >= 0")
    if args.threads < 1 or args.num_images < 1:
        p.error("--threads and --num-images must be >= 1")
    return args


# ------------------------------------------------------------------------------------ inputs


def _coefficients(
    rng: np.random.Generator, steps: np.ndarray, shape: tuple[int, ...], gain: float
) -> np.ndarray:
    """[N, C, Hb, Wb] integer-valued float32 for channels k = 8*u + v (C = 64 * planes), `steps` [N, C].

    Laplacian scales fitted by eye to CIFAR-10's files (quantized std at quality 75: luma DC ~52,
    k=1 ~22, k=9 ~13; chroma about a quarter of luma, hence `gain`).
    """
    k = np.arange(shape[1]) % 64
    u, v = k // 8, k % 8
    spread = gain * np.where(k == 0, 300.0, 180.0 / (1.0 + u + v) ** 1.2)  # unquantized coefficient scale
    # 8-bit pixels bound every unquantized coefficient (orthonormal 8x8 DCT) to [-1024, 1016]
    raw = np.clip(rng.laplace(size=shape) * spread[None, :, None, None], -1024, 1016)
    return np.rint(raw / steps[:, :, None, None]).astype(np.float32)


def synthetic_inputs(meta: ArtifactMeta, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Fixed random inputs of the artifact's shapes at `batch`: y [N, 64, Hb, Wb] and cbcr
    [N, 128, Hb/2, Wb/2] integer-valued float32, qt [N, 3, 64] float32 (IJG quality 75), x [N, 3, H, W]."""
    rng = np.random.default_rng(seed)
    qt = ijg_qt([QUALITY] * batch).numpy()
    out: dict[str, np.ndarray] = {}
    for spec in meta.inputs:
        shape = (batch, *(int(d) for d in spec.shape[1:]))
        if spec.name == "y":
            out["y"] = _coefficients(rng, qt[:, 0], shape, 1.0)
        elif spec.name == "cbcr":
            out["cbcr"] = _coefficients(rng, qt[:, 1:].reshape(batch, 128), shape, 0.25)
        elif spec.name == "qt":
            out["qt"] = qt.copy()
        else:
            out[spec.name] = rng.standard_normal(size=shape, dtype=np.float32)
    return out


# ------------------------------------------------------------------------------------ models


def build_models(args: argparse.Namespace, work: Path) -> dict[str, dict[str, Any]]:
    """Export the three graphs into `work`; returns {variant: {"path", "lint"[, "fake_quant"]}}: the
    ONNX file, its lint report (None for FP32) and the calibrated PyTorch fake-quant model."""
    models: dict[str, dict[str, Any]] = {}
    print(f"exporting FP32 ONNX of {args.checkpoint}", file=sys.stderr)
    fp32 = export_onnx(load_checkpoint(args.checkpoint), work / "fp32.onnx")
    models["fp32"] = {"path": fp32, "lint": None}
    for variant, add in ADD_INPUTS.items():
        print(f"PTQ (entropy, add_inputs={add}) on {args.num_images} images of {args.calib}", file=sys.stderr)
        result = quantize_checkpoint(
            args.checkpoint,
            work / f"{variant}.pt",
            method="ptq",
            recipe=build_recipe(bits="w8a8", calibrator="entropy", add_inputs=add),
            calib=PtqData(args.calib, num_images=args.num_images, seed=args.seed),
            device="cpu",
        )
        path = export_onnx(load_checkpoint(result.path), work / f"{variant}.onnx")
        models[variant] = {"path": path, "lint": lint_qdq(path), "fake_quant": result.model.eval()}
    return models


# ------------------------------------------------------------------------------------ timing


def time_interleaved(
    sessions: dict[str, Any], feeds: dict[str, np.ndarray], rounds: int, iters: int, warmup: int
) -> dict[str, list[float]]:
    """Milliseconds of every timed call, per model; each round runs `iters` calls of every model in turn."""
    calls = {
        name: (lambda s=s: s.run(None, {i.name: feeds[i.name] for i in s.get_inputs()}))
        for name, s in sessions.items()
    }
    for call in calls.values():
        for _ in range(warmup):
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            for _ in range(iters):
                t0 = time.perf_counter()
                call()
                times[name].append((time.perf_counter() - t0) * 1000.0)
    return times


def sqnr_db(reference: np.ndarray, other: np.ndarray) -> float:
    noise = float(np.sum((reference.astype(np.float64) - other) ** 2))
    signal = float(np.sum(reference.astype(np.float64) ** 2))
    return float("inf") if noise == 0 else 10.0 * np.log10(max(signal, 1e-30) / noise)


def compare_logits(
    runners: dict[str, Any],
    models: dict[str, dict[str, Any]],
    feeds: dict[str, np.ndarray],
    meta: ArtifactMeta,
) -> dict[str, dict[str, float]]:
    """Per INT8 variant: SQNR (dB) and top-1 agreement of its ORT logits against FP32 ORT (quantization
    error) and against its own PyTorch fake-quant model (the rewrite and ORT's integer rounding only)."""
    logits = {v: runners[v].predict(feeds).numpy() for v in VARIANTS}
    args = tuple(torch.from_numpy(feeds[name]) for name in meta.input_names)
    out = {}
    for v in ADD_INPUTS:
        with torch.inference_mode():
            fake = models[v]["fake_quant"](*args).float().numpy()
        out[v] = {
            "sqnr_db_vs_fp32": sqnr_db(logits["fp32"], logits[v]),
            "top1_agree_fp32": float(np.mean(logits[v].argmax(1) == logits["fp32"].argmax(1))),
            "sqnr_db_vs_fake_quant": sqnr_db(fake, logits[v]),
            "top1_agree_fake_quant": float(np.mean(logits[v].argmax(1) == fake.argmax(1))),
        }
    return out


def run(
    args: argparse.Namespace, work: Path, tmp: Path, models: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Export (unless `models`, build_models' result, is given) and time; the result dict."""
    torch.set_num_threads(args.threads)
    models = models if models is not None else build_models(args, work)
    runners, info = {}, {}
    for variant in VARIANTS:
        artifact = load_artifact(models[variant]["path"])
        runner = load_runner(artifact, "ort", threads=args.threads)
        runners[variant] = runner
        lint = models[variant]["lint"]
        stats = runner.rewrite_stats
        info[variant] = {
            "path": str(models[variant]["path"]) if args.out_dir else None,  # else a deleted temp file
            "file_mb": models[variant]["path"].stat().st_size / 2**20,
            "kernels": kernel_summary(
                optimized_ops(artifact, args.threads, tmp, f"{variant}_{args.threads}")
            ),
            "lint": lint.to_dict() if lint is not None else None,
            "rewrite": dataclasses.asdict(stats) if stats is not None else None,
        }
    meta = load_artifact(models["fp32"]["path"]).meta
    sessions = {v: r.session for v, r in runners.items()}
    rows, agreement = [], {}
    for batch in args.batches:
        print(f"timing batch {batch}: {args.rounds} rounds x {args.iters} calls", file=sys.stderr)
        feeds = synthetic_inputs(meta, batch, args.seed)
        times = time_interleaved(sessions, feeds, args.rounds, args.iters, args.warmup)
        base = statistics.median(times["fp32"])
        for variant in VARIANTS:
            ms = times[variant]
            per_round = [
                statistics.median(ms[r * args.iters : (r + 1) * args.iters]) for r in range(args.rounds)
            ]
            med = statistics.median(ms)
            rows.append(
                {
                    "batch": batch,
                    "model": variant,
                    "ms_median": med,
                    "ms_min": min(ms),
                    "round_medians_ms": per_round,
                    "images_per_s": batch / (med / 1000.0),
                    "speed_vs_fp32": base / med,
                }
            )
        if getattr(args, "agreement", True):
            agreement[str(batch)] = compare_logits(runners, models, feeds, meta)
    import onnxruntime

    return {
        "checkpoint": str(args.checkpoint),
        "calib": str(args.calib),
        "num_images": args.num_images,
        "threads": args.threads,
        "rounds": args.rounds,
        "iters": args.iters,
        "input_kind": meta.input_kind,
        "input_size": meta.input_size,
        "env": {
            "cpu": platform.processor() or platform.machine(),
            "dctq": __version__,
            "onnxruntime": onnxruntime.__version__,
            "torch": torch.__version__,
        },
        "models": info,
        "rows": rows,
        "agreement": agreement,
    }


# ------------------------------------------------------------------------------------ report


def markdown(result: dict[str, Any]) -> str:
    env = result["env"]
    lines = [
        f"ONNX Runtime {env['onnxruntime']} CPUExecutionProvider ({env['cpu']}), {result['threads']} thread(s), "
        f"{result['input_kind']} {result['input_size']}px, median of {result['rounds']} interleaved rounds x "
        f"{result['iters']} calls",
        "",
        "| batch | model | ms/batch (median) | ms (min) | images/s | speed vs FP32 |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['batch']} | {r['model']} | {r['ms_median']:.3f} | {r['ms_min']:.3f} | "
            f"{r['images_per_s']:.0f} | {r['speed_vs_fp32']:.2f}x |"
        )
    lines += [
        "",
        "| model | QLinearConv | ConvInteger | QLinearAdd | other integer ops | float Conv | float Gemm/MatMul "
        "| Q / DQ left | integer kernels | lint errors / warnings |",
        "|---|---:|---:|---:|---|---:|---:|---:|---|---:|",
    ]
    for name, m in result["models"].items():
        k = m["kernels"]
        others = {
            op: n
            for op, n in k["integer_ops"].items()
            if op not in ("QLinearConv", "ConvInteger", "QLinearAdd")
        }
        other_text = ", ".join(f"{op} {n}" for op, n in others.items()) or "-"
        lint = f"{m['lint']['errors']} / {m['lint']['warnings']}" if m["lint"] else "-"
        lines.append(
            f"| {name} | {k['QLinearConv']} | {k['ConvInteger']} | {k['QLinearAdd']} | {other_text} | "
            f"{k['float_conv']} | {k['float_gemm']} | {k['QuantizeLinear']} / {k['DequantizeLinear']} | "
            f"{'yes' if k['integer_kernels'] else 'no'} | {lint} |"
        )
    if not result["agreement"]:
        return "\n".join(lines)
    last = max(result["agreement"], key=int)
    agree = result["agreement"][last]
    lines += [
        "",
        f"INT8 logits on the timed batch of {last}, SQNR (top-1 agreement) against FP32 ORT | against "
        "its PyTorch fake-quant model: "
        + "; ".join(
            f"{v}: {a['sqnr_db_vs_fp32']:.1f} dB ({100 * a['top1_agree_fp32']:.0f}%) | "
            f"{a['sqnr_db_vs_fake_quant']:.1f} dB ({100 * a['top1_agree_fake_quant']:.0f}%)"
            for v, a in agree.items()
        ),
    ]
    return "\n".join(lines)


def brief(result: dict[str, Any]) -> dict[str, Any]:
    """The printed JSON: everything but the lint violation lists (the --json file keeps them)."""
    out = json.loads(json.dumps(result))
    for m in out["models"].values():
        if m["lint"]:
            m["lint"]["warning_rules"] = dict(Counter(v["rule"] for v in m["lint"].pop("violations")))
    return out


def lint_failures(result: dict[str, Any]) -> list[str]:
    return [
        f"{name}: {m['lint']['errors']} lint error(s), e.g. {next(v['message'] for v in m['lint']['violations'] if v['severity'] == 'error')}"
        for name, m in result["models"].items()
        if m["lint"] and m["lint"]["errors"]
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        with tempfile.TemporaryDirectory(prefix="dctq_ort_int8_") as tmp_name:
            tmp = Path(tmp_name)
            work = args.out_dir or tmp / "models"
            work.mkdir(parents=True, exist_ok=True)
            result = run(args, work, tmp)
    except DctqError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    result["args"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    print(markdown(result))
    print()
    print(json.dumps(brief(result), indent=2))
    if args.json:
        write_text_atomic(args.json, json.dumps(result, indent=2) + "\n")
    failures = lint_failures(result)
    for line in failures:
        print(f"error: {line}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
