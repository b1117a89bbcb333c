"""Where ONNX Runtime spends its time: per-op-type totals from ORT's own profiler, for .onnx files.

Each file is loaded as the `ort` backend loads it (rewrite_for_ort on Q/DQ graphs with `--add-scale`,
ORT_ENABLE_ALL, `--threads` intra-op threads) plus `enable_profiling`, run `--iters` times on
bench/ort_int8.py's synthetic inputs at `--batch`, and the profile's node events are summed per op
type (the optimized graph's ops: QLinearConv, Conv/FusedConv, QLinearAdd, Max, DequantizeLinear...).
Prints a table per file: op type, node count, ms per run and share of the summed node time; with
`--convs K`, how efficiently the convolutions run: GMAC/s over all of them (MACs from the shapes the
profiler records) and the K slowest conv nodes with their shapes and GMAC/s, to tell a net with more work
from a net whose convs run badly.

    .venv/bin/python bench/ort_profile.py fp32.onnx int8.onnx --batch 32 --threads 2 --iters 3 --json p.json
    .venv/bin/python bench/ort_profile.py dct.onnx rgb.onnx --batch 32 --threads 1 --convs 8
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from dctq.common.files import write_text_atomic
from dctq.deploy.artifact import load_artifact
from dctq.deploy.onnx.graph import load_onnx
from dctq.deploy.onnx.ort_rewrite import is_qdq_model, rewrite_for_ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ort_int8 import synthetic_inputs

WEIGHT_INPUT = {"Conv": 1, "FusedConv": 1, "QLinearConv": 3}
"""Which input of a conv op holds the weight [Cout, Cin/groups, kh, kw]."""


def weight_shapes(optimized: Path) -> dict[str, list[int]]:
    """Conv node name -> weight shape, from the optimized graph ORT saved (its profiler omits the weights
    it pre-packed, so the profile alone cannot give QLinearConv's MACs)."""
    import onnx

    model = onnx.load(str(optimized))
    inits = {t.name: list(t.dims) for t in model.graph.initializer}
    return {
        n.name: inits[n.input[WEIGHT_INPUT[n.op_type]]]
        for n in model.graph.node
        if n.op_type in WEIGHT_INPUT and len(n.input) > WEIGHT_INPUT[n.op_type]
        and n.input[WEIGHT_INPUT[n.op_type]] in inits
    }  # fmt: skip


def conv_macs(weight: list[int], out: list[int]) -> int:
    """Multiply-accumulates of one conv: weight elements x batch x output pixels. The output's channel
    axis is 1 (NCHW, and ORT's NCHWc) or last (NHWC). NCHWc pads channels up to its block (16 on AVX-512)
    in its outputs and packed weights, so a conv narrower than that does more work than this counts."""
    cout = int(weight[0])
    nhwc = int(out[-1]) == cout and int(out[1]) != cout
    channels = cout if nhwc else int(out[1])  # NCHWc: out[1] may be cout padded up to the block
    macs = 1
    for d in out:
        macs *= int(d)
    macs //= channels
    for d in weight:
        macs *= int(d)
    return macs


def profile(
    path: Path, batch: int, threads: int, iters: int, add_scale: str | None, tmp: Path
) -> dict[str, Any]:
    import onnxruntime as ort

    artifact = load_artifact(path)
    model = load_onnx(path)
    if is_qdq_model(model):
        model, _ = rewrite_for_ort(model, add_scale=add_scale)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.enable_profiling = True
    options.profile_file_prefix = str(tmp / path.stem)
    options.optimized_model_filepath = str(tmp / f"{path.stem}.optimized.onnx")
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    weights = weight_shapes(Path(options.optimized_model_filepath))
    feeds = synthetic_inputs(artifact.meta, batch)
    feeds = {i.name: feeds[i.name] for i in session.get_inputs()}
    session.run(None, feeds)  # warm-up, dropped below
    for _ in range(iters):
        session.run(None, feeds)
    events = json.loads(Path(session.end_profiling()).read_text())
    runs = [e for e in events if e.get("name") == "model_run"]
    warm_end = runs[0]["ts"] + runs[0]["dur"]
    per_op: dict[str, float] = defaultdict(float)
    nodes: dict[str, set[str]] = defaultdict(set)
    convs: dict[str, dict[str, Any]] = {}
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time") or e["ts"] < warm_end:
            continue
        op = e.get("args", {}).get("op_name", "?")
        per_op[op] += e["dur"] / 1000.0 / iters
        nodes[op].add(e["name"])
        name = e["name"].removesuffix("_kernel_time")
        if name in weights:
            out = next(iter(e["args"]["output_type_shape"][0].values()))
            node = convs.setdefault(name, {"node": name, "op": op, "ms": 0.0})
            node.update(macs=conv_macs(weights[name], out), weight=weights[name], output=out)
            node["ms"] += e["dur"] / 1000.0 / iters
    total = sum(per_op.values())
    conv_ms = sum(c["ms"] for c in convs.values())
    conv_macs_total = sum(c["macs"] for c in convs.values())
    for c in convs.values():
        c["gmac_per_s"] = c["macs"] / 1e6 / c["ms"] if c["ms"] else None
    run_ms = sorted(r["dur"] / 1000.0 for r in runs[1:])
    return {
        "file": str(path),
        "batch": batch,
        "threads": threads,
        "run_ms_median": run_ms[len(run_ms) // 2],
        "node_ms": total,
        "convs": {
            "nodes": len(convs),
            "ms": conv_ms,
            "gmac": conv_macs_total / 1e9,
            "gmac_per_s": conv_macs_total / 1e6 / conv_ms if conv_ms else None,
            "slowest": sorted(convs.values(), key=lambda c: -c["ms"]),
        },
        "ops": {
            op: {"nodes": len(nodes[op]), "ms": ms, "share": ms / total}
            for op, ms in sorted(per_op.items(), key=lambda kv: -kv[1])
        },
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("onnx", type=Path, nargs="+")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--add-scale", default="output", help="rewrite_for_ort's add_scale; 'none' for None")
    p.add_argument("--convs", type=int, default=0, help="also list the K slowest conv nodes (default 0)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    add_scale = None if args.add_scale == "none" else args.add_scale
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in args.onnx:
            r = profile(path, args.batch, args.threads, args.iters, add_scale, Path(tmp))
            results.append(r)
            print(f"\n{path} batch {r['batch']}, {r['threads']} thread(s): run {r['run_ms_median']:.1f} ms")
            print("| op | nodes | ms/run | share |\n|---|---:|---:|---:|")
            for op, v in r["ops"].items():
                print(f"| {op} | {v['nodes']} | {v['ms']:.2f} | {100 * v['share']:.1f}% |")
            c = r["convs"]
            if args.convs and c["nodes"]:
                print(
                    f"\n{c['nodes']} convs: {c['gmac']:.2f} GMAC in {c['ms']:.1f} ms = {c['gmac_per_s']:.1f} GMAC/s"
                )
                print(
                    "| conv node | op | weight, output | GMAC | ms | GMAC/s |\n|---|---|---|---:|---:|---:|"
                )
                for n in c["slowest"][: args.convs]:
                    shapes = ", ".join("x".join(map(str, sh)) for sh in (n["weight"], n["output"]))
                    rate = f"{n['gmac_per_s']:.1f}" if n["gmac_per_s"] else "-"
                    print(
                        f"| {n['node']} | {n['op']} | {shapes} | {n['macs'] / 1e9:.3f} | {n['ms']:.2f} | {rate} |"
                    )
    if args.json:
        write_text_atomic(args.json, json.dumps({"results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
