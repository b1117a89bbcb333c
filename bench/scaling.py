"""How the cost of the INT8 DCT and RGB nets in ONNX Runtime grows with batch size, input size and threads.

Three sweeps of the same pair of INT8 .onnx files (loaded by the `ort` backend, rewrite included),
each one PNG plot: latency per batch and images/s against
- batch size (`--batches`, at 224 px and `--threads`),
- input size (`--sizes`, batch `--size-batch`; the files' spatial axes are made symbolic, as the nets
  are fully convolutional up to a global average pool: y/cbcr grids scale with the pixels),
- intra-op threads (`--thread-list`, batch `--size-batch`, 224 px).
The two models run interleaved in every round (median of `--rounds` rounds of `--iters` calls); the
`uptime` load at the start and end is kept in the JSON. Inputs: bench/ort_int8.py's synthetic ones.

    OMP_NUM_THREADS=2 nice -n 10 .venv/bin/python bench/scaling.py --dct dct.onnx --rgb rgb.onnx \\
        --out-dir docs/results/scaling
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from dctq.common.files import write_text_atomic
from dctq.deploy.artifact import artifact_binding, load_artifact, sidecar_path
from dctq.deploy.backends.ort import OrtRunner

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import int_list
from ort_int8 import synthetic_inputs


def spatially_dynamic(path: Path, tmp: Path) -> Path:
    """A copy of the .onnx (and its sidecar) whose inputs have symbolic H and W (inner shapes dropped)."""
    import onnx

    model = onnx.load(str(path))
    for i, inp in enumerate(model.graph.input):
        dims = inp.type.tensor_type.shape.dim
        if len(dims) == 4:
            dims[2].dim_param, dims[3].dim_param = f"h{i}", f"w{i}"
    del model.graph.value_info[:]
    for out in model.graph.output:
        out.type.tensor_type.shape.dim[0].dim_param = "batch"
    target = tmp / path.name
    onnx.save(model, str(target))
    data = json.loads(sidecar_path(path).read_text())
    data["artifact"] = artifact_binding(target)  # the sidecar is bound to the file's bytes
    write_text_atomic(sidecar_path(target), json.dumps(data, indent=2) + "\n")
    return target


def dynamic_pair(dct: Path, rgb: Path, tmp: Path) -> dict[str, Path]:
    """{"dct", "rgb"}: spatially dynamic copies of the two files, each in a folder of its own (the two
    often share a name, int8_residual.onnx, and one copy would overwrite the other).

    Raises SystemExit when they are not a DCT and an RGB model."""
    paths = {}
    for key, source in (("dct", dct), ("rgb", rgb)):
        (tmp / key).mkdir()
        paths[key] = spatially_dynamic(source, tmp / key)
    kinds = {k: load_artifact(v).meta.input_kind for k, v in paths.items()}
    if kinds != {"dct": "dct", "rgb": "rgb"}:
        raise SystemExit(f"--dct and --rgb must be a DCT and an RGB model, got {kinds}")
    return paths


def feeds_at(meta: Any, batch: int, size: int) -> dict[str, np.ndarray]:
    scaled = dataclasses.replace(
        meta,
        inputs=tuple(
            dataclasses.replace(
                s, shape=(*s.shape[:2], *(int(d) * size // meta.input_size for d in s.shape[2:]))
            )
            if len(s.shape) == 4
            else s
            for s in meta.inputs
        ),
    )
    return synthetic_inputs(scaled, batch)


def time_pair(
    sessions: dict[str, Any], feeds: dict[str, dict[str, np.ndarray]], rounds: int, iters: int
) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for k, s in sessions.items():
        s.run(None, feeds[k])
    for _ in range(rounds):
        for k, s in sessions.items():
            for _ in range(iters):
                t0 = time.perf_counter()
                s.run(None, feeds[k])
                times[k].append(time.perf_counter() - t0)
    return {k: 1000 * statistics.median(v) for k, v in times.items()}


def plot(rows: list[dict[str, Any]], axis: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for model in ("dct", "rgb"):
        rs = [r for r in rows if r["axis"] == axis and r["model"] == model]
        xs = [r[axis] for r in rs]
        a.plot(xs, [r["ms"] for r in rs], "o-", label=f"{model} INT8")
        b.plot(xs, [r["images_per_s"] for r in rs], "o-", label=f"{model} INT8")
    a.set(xlabel=axis, ylabel="ms per batch (median)", title=f"latency vs {axis}")
    b.set(xlabel=axis, ylabel="images/s", title=f"throughput vs {axis}")
    if axis == "batch":
        a.set_xscale("log", base=2)
        b.set_xscale("log", base=2)
    for ax in (a, b):
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dct", type=Path, required=True)
    p.add_argument("--rgb", type=Path, required=True)
    p.add_argument("--batches", type=int_list, default=[1, 8, 32, 64])
    p.add_argument("--sizes", type=int_list, default=[224, 320, 448])
    p.add_argument("--thread-list", type=int_list, default=[1, 2])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--size-batch", type=int, default=8)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--iters", type=int, default=1)
    p.add_argument("--out-dir", type=Path, required=True)
    args = p.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp_name:
        paths = dynamic_pair(args.dct, args.rgb, Path(tmp_name))
        metas = {k: load_artifact(v).meta for k, v in paths.items()}

        def sessions(threads: int) -> dict[str, Any]:
            return {k: OrtRunner(load_artifact(v), threads=threads).session for k, v in paths.items()}

        def record(axis: str, value: int, batch: int, ms: dict[str, float]) -> None:
            for model, t in ms.items():
                rows.append(
                    {
                        "axis": axis,
                        axis: value,
                        "model": model,
                        "batch": batch,
                        "ms": t,
                        "images_per_s": 1000 * batch / t,
                    }
                )
            print(f"{axis}={value}: " + ", ".join(f"{m} {t:.1f} ms" for m, t in ms.items()), flush=True)

        main_sessions = sessions(args.threads)
        for batch in args.batches:
            feeds = {k: feeds_at(metas[k], batch, 224) for k in paths}
            record("batch", batch, batch, time_pair(main_sessions, feeds, args.rounds, args.iters))
        for size in args.sizes:
            feeds = {k: feeds_at(metas[k], args.size_batch, size) for k in paths}
            record("size", size, args.size_batch, time_pair(main_sessions, feeds, args.rounds, args.iters))
        for threads in args.thread_list:
            feeds = {k: feeds_at(metas[k], args.size_batch, 224) for k in paths}
            record(
                "threads",
                threads,
                args.size_batch,
                time_pair(sessions(threads), feeds, args.rounds, args.iters),
            )
    for axis in ("batch", "size", "threads"):
        plot(rows, axis, args.out_dir / f"scaling_{axis}.png")
    out = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg(),
        "rows": rows,
    }
    write_text_atomic(args.out_dir / "scaling.json", json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
