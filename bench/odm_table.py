"""The SR QAT / ODM tables of docs/benchmarks.md from a folder of run results.

Reads `<name>.eval.json` (`dctq evaluate --json --out`) and `<name>.quantize.json` (`dctq quantize --json`)
of the runs named ROW_BIT (rows: qat, var, coop, odm1, odm2; bits: w4a4, w3a3, w2a2) and fp32.eval.json,
and prints (1) PSNR / SSIM per set and bit width, (2) every row against plain QAT at the same bit width:
the pooled per-image PSNR difference on Set5 + Set14 with its 95% interval (bench/sr_paired.py), (3) the
gradient conflict ratio per layer of the cooperative runs, (4) every row against FP32 with its QAT
seconds. Missing runs leave their cells empty ("-").

    .venv/bin/python bench/odm_table.py runs/sr --json docs/results/odm_sr_table.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the bench folder is no package
from bench_common import script_main
from sr_paired import paired, scores_of

ROWS = {
    "qat": "plain QAT (PAMS learnable clip)",
    "var": "+ variance regulariser (lambda_V 0.05, ungated)",
    "coop": "+ cooperative gate",
    "odm1": "+ offsets = ODM v1",
    "odm2": "ODM v2 (mismatch + gate + weight clipping)",
}
BITS = ("w4a4", "w3a3", "w2a2")
SETS = ("set5", "set14")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "folder", type=Path, help="folder holding <row>_<bits>.eval.json / .quantize.json and fp32.eval.json"
    )
    p.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    return p.parse_args(argv)


def _load(folder: Path, name: str) -> dict[str, Any] | None:
    path = folder / f"{name}.eval.json"
    return scores_of(path, list(SETS)) if path.is_file() else None


def run(args: argparse.Namespace) -> dict[str, Any]:
    folder = args.folder
    fp = _load(folder, "fp32")
    cells: dict[str, dict[str, Any]] = {}
    for bits in BITS:
        base = _load(folder, f"qat_{bits}")
        for row in ROWS:
            name = f"{row}_{bits}"
            scores = _load(folder, name)
            if scores is None:
                continue
            cell: dict[str, Any] = {"means": {s: list(v) for s, v in scores["means"].items()}}
            if base is not None and row != "qat":
                cell["vs_qat"] = paired(base, scores)
            if fp is not None:
                cell["vs_fp32"] = paired(fp, scores)
            quantize = folder / f"{name}.quantize.json"
            if quantize.is_file():
                info = json.loads(quantize.read_text(encoding="utf-8"))["quantization"]["qat"]
                cell["conflict_ratio"] = info.get("conflict_ratio")
                cell["conflict_ratio_total"] = info.get("conflict_ratio_total")
                cell["offsets"] = info.get("offsets")
                cell["weight_clip"] = info.get("weight_clip")
                cell["seconds"] = sum(h["seconds"] for h in info.get("history", []))
            cells[name] = cell
    return {
        "fp32": {s: list(v) for s, v in fp["means"].items()} if fp else None,
        "cells": cells,
        "per_image_psnr": {
            n: _load(folder, n)["sets"] for n in ("fp32", *cells) if (folder / f"{n}.eval.json").is_file()
        },
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "| CPU-scale EDSR x4, PSNR dB / SSIM | "
        + " | ".join(f"{b.upper()} Set5 | {b.upper()} Set14" for b in BITS)
        + " |"
    ]
    lines.append("|---|" + "---:|" * (2 * len(BITS)))
    if result["fp32"]:
        fp = result["fp32"]
        lines.append(
            "| FP32 | " + " | ".join(f"{fp[s][0]:.2f} / {fp[s][1]:.4f}" for _ in BITS for s in SETS) + " |"
        )
    for row, label in ROWS.items():
        cells = []
        for bits in BITS:
            cell = result["cells"].get(f"{row}_{bits}")
            cells += [f"{cell['means'][s][0]:.2f} / {cell['means'][s][1]:.4f}" if cell else "-" for s in SETS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| vs plain QAT, Set5 + Set14 pooled (19 images): mean dB [95% CI], wins | "
        + " | ".join(b.upper() for b in BITS)
        + " |",
    ]
    lines.append("|---|" + "---:|" * len(BITS))
    for row, label in ROWS.items():
        if row == "qat":
            continue
        cells = []
        for bits in BITS:
            vs = result["cells"].get(f"{row}_{bits}", {}).get("vs_qat")
            cells.append(
                f"{vs['diff_db']:+.3f} [{vs['ci95_db'][0]:+.3f}, {vs['ci95_db'][1]:+.3f}], {vs['wins']}/{vs['images']}"
                if vs
                else "-"
            )
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", _vs_fp32(result), "", _conflicts(result)]
    return "\n".join(lines)


def _vs_fp32(result: dict[str, Any]) -> str:
    """Every row against the FP32 model (pooled per-image PSNR difference, 95% interval) and its QAT seconds."""
    lines = [
        "| vs FP32, Set5 + Set14 pooled: mean dB [95% CI]; QAT seconds | "
        + " | ".join(b.upper() for b in BITS)
        + " |",
        "|---|" + "---:|" * len(BITS),
    ]
    for row, label in ROWS.items():
        cells = []
        for bits in BITS:
            cell = result["cells"].get(f"{row}_{bits}", {})
            vs = cell.get("vs_fp32")
            seconds = f"; {cell['seconds']:.0f} s" if cell.get("seconds") else ""
            cells.append(
                f"{vs['diff_db']:+.3f} [{vs['ci95_db'][0]:+.3f}, {vs['ci95_db'][1]:+.3f}]{seconds}"
                if vs
                else "-"
            )
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _conflicts(result: dict[str, Any]) -> str:
    """The gradient conflict ratio (% of elements whose regulariser and reconstruction gradients have opposite
    signs, over all steps) per weight tensor of the runs that logged one; quantizer ranges and offsets in the
    last rows."""
    runs = [n for n, c in result["cells"].items() if c.get("conflict_ratio")]
    if not runs:
        return "(no run logged gradient conflict ratios)"
    layers: list[str] = []
    for n in runs:
        layers += [k for k in result["cells"][n]["conflict_ratio"] if k not in layers]
    weights = [k for k in layers if "quantizer" not in k]
    lines = [
        "| gradient conflict ratio % | " + " | ".join(runs) + " |",
        "|---|" + "---:|" * len(runs),
    ]

    def share(n: str, keys: list[str]) -> str:
        ratios = [
            result["cells"][n]["conflict_ratio"][k] for k in keys if k in result["cells"][n]["conflict_ratio"]
        ]
        return f"{100 * sum(ratios) / len(ratios):.1f}" if ratios else "-"

    for k in weights:
        lines.append(f"| {k} | " + " | ".join(share(n, [k]) for n in runs) + " |")
    ranges = [k for k in layers if "quantizer" in k]
    lines.append(
        "| quantizer ranges and offsets (mean over tensors) | "
        + " | ".join(share(n, ranges) for n in runs)
        + " |"
    )
    lines.append(
        "| all elements | "
        + " | ".join(f"{100 * (result['cells'][n].get('conflict_ratio_total') or 0):.1f}" for n in runs)
        + " |"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    script_main(parse_args, run, markdown)
