"""Rate-distortion of the DQ autoencoder's codes against JPEG on the same CIFAR-10 validation images.

Reference images: the validation split's JPEG files as stored (IJG quality 75), decoded by Pillow: what the
autoencoder reads. JPEG: each reference re-encoded by Pillow (libjpeg, IJG tables at quality q, 4:2:0, no
Huffman optimisation) at qualities 10..90, decoded, and scored against the reference; its rate is counted two
ways: the whole file, and the entropy-coded scan alone (the file minus its headers: quant and Huffman tables,
frame and scan headers, about 600 bytes that dominate a 32x32 file; a codec with fixed tables could omit
them, as the autoencoder's codebooks are part of the model). DQ: each trained run's validation report (best.pt
of bench/dq_study.py's runs): code bits per image under the uniform bound (log2 K per code) and under the
learned prior (the ideal entropy-coded size), PSNR of the mean reconstruction rounded to 8 bits. PSNR is the
mean over images of per-image PSNR, RGB and BT.601 Y, on both sides.

    .venv/bin/python bench/dq_rate_distortion.py --runs /work/runs/dq-grid --json docs/results/dq_rate_distortion.json \
        --plot docs/results/dq_rate_distortion.png
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from dctq.jpeg.rgb import decode_rgb
from dctq.jpeg.splits import split_data
from dctq.models.dq.rate import luma, psnr

QUALITIES = tuple(range(10, 100, 10))


def scan_bytes(data: bytes) -> int:
    """Bytes of the entropy-coded data of a baseline JPEG: from the end of the SOS header to EOI."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ValueError("not a marker where one was expected")
        marker, length = data[pos + 1], int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == 0xDA:
            return len(data) - (pos + 2 + length) - 2
        pos += 2 + length
    raise ValueError("no SOS marker")


def _scores(ref: np.ndarray, rec: np.ndarray) -> tuple[float, float]:
    a = torch.tensor(ref).permute(2, 0, 1)[None].double()
    b = torch.tensor(rec).permute(2, 0, 1)[None].double()
    return float(psnr(a, b)[0]), float(psnr(luma(a), luma(b))[0])


def jpeg_points(data: str, max_images: int | None) -> tuple[list[dict[str, Any]], int]:
    """Per quality: mean file bits, scan bits and PSNR RGB / Y over the validation images; and the image count."""
    split = split_data(data, 0.1)
    samples = split.samples("val")[:max_images]
    sums = {q: np.zeros(4) for q in QUALITIES}
    for sample in samples:
        path = Path(sample.path) if Path(sample.path).is_absolute() else split.root / sample.path
        ref, _ = decode_rgb(path.read_bytes(), path)
        for q in QUALITIES:
            buffer = io.BytesIO()
            Image.fromarray(ref).save(buffer, format="JPEG", quality=q)
            encoded = buffer.getvalue()
            rec = np.asarray(Image.open(io.BytesIO(encoded)).convert("RGB"))
            p_rgb, p_y = _scores(ref, rec)
            sums[q] += (8 * len(encoded), 8 * scan_bytes(encoded), p_rgb, p_y)
    n = len(samples)
    return [
        {"quality": q, "file_bits": s[0] / n, "scan_bits": s[1] / n, "psnr_rgb": s[2] / n, "psnr_y": s[3] / n}
        for q, s in sums.items()
    ], n


def dq_points(runs: Path) -> list[dict[str, Any]]:
    """One point per finished run folder: its best.pt validation report."""
    points = []
    for best in sorted(runs.glob("*/best.pt")):
        payload = torch.load(best, weights_only=True)
        m = payload["extra"]["val"]["metrics"]
        kwargs = payload["arch_kwargs"]
        points.append(
            {
                "run": best.parent.name,
                "mode": kwargs.get("mode", "dq"),
                "M": kwargs.get("num_codebooks"),
                "uniform_bits": m["code_bits_uniform"],
                "prior_bits": m["code_bits_prior"],
                "psnr_rgb": m["psnr_rgb"],
                "psnr_y": m["psnr_y"],
                "images": m["images"],
            }
        )
    return points


COLOURS = {
    "jpeg_file": (120, 120, 120),
    "jpeg_scan": (0, 0, 0),
    "dq": (214, 39, 40),
    "vq": (31, 119, 180),
    "single": (44, 160, 44),
}


def plot(
    jpeg: list[dict[str, Any]], dq: list[dict[str, Any]], path: Path, width: int = 1100, height: int = 460
) -> None:
    """Two panels (PSNR RGB, PSNR Y) against bits per image, drawn with Pillow (no matplotlib dependency)."""
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    draw.text((10, 6), "CIFAR-10 validation: PSNR vs bits per image. JPEG re-encoded q10..q90 (grey: whole file, black: "
              "scan only); DQ/VQ codes (filled: learned prior, hollow: uniform bound)", fill="black")  # fmt: skip
    xs = [p["file_bits"] for p in jpeg] + [p["uniform_bits"] for p in dq]
    x_top = max(xs) * 1.05
    for k, key in enumerate(("psnr_rgb", "psnr_y")):
        ys = [p[key] for p in jpeg] + [p[key] for p in dq]
        y_lo, y_hi = np.floor(min(ys) - 1), np.ceil(max(ys) + 1)
        pw = (width - 40) // 2
        x0, y0, x1, y1 = 20 + k * (pw + 20) + 40, 50, 20 + k * (pw + 20) + pw, height - 60

        def to_px(x: float, y: float, box=(x0, y0, x1, y1), lo=y_lo, hi=y_hi) -> tuple[float, float]:
            return box[0] + (box[2] - box[0]) * x / x_top, box[3] - (box[3] - box[1]) * (y - lo) / (hi - lo)

        draw.rectangle((x0, y0, x1, y1), outline="gray")
        draw.text((x0, y0 - 16), f"{'PSNR RGB' if key == 'psnr_rgb' else 'PSNR Y (BT.601)'} dB", fill="black")
        for tick in np.linspace(y_lo, y_hi, 5):
            _, ty = to_px(0, tick)
            draw.text((x0 - 38, ty - 6), f"{tick:.1f}", fill="gray")
        for tick in np.linspace(0, x_top, 6):
            tx, _ = to_px(tick, y_lo)
            draw.text((tx - 12, y1 + 4), f"{tick:.0f}", fill="gray")
        draw.text(((x0 + x1) // 2 - 40, y1 + 20), "bits per image", fill="black")
        for rate, colour in (("file_bits", COLOURS["jpeg_file"]), ("scan_bits", COLOURS["jpeg_scan"])):
            pts = [to_px(p[rate], p[key]) for p in jpeg]
            draw.line(pts, fill=colour, width=2)
            for (px, py), p in zip(pts, jpeg, strict=True):
                draw.ellipse((px - 3, py - 3, px + 3, py + 3), fill=colour)
                if rate == "scan_bits" and p["quality"] in (10, 50, 90):
                    draw.text((px + 4, py - 12), f"q{p['quality']}", fill=colour)
        for p in dq:
            colour = COLOURS.get(p["mode"], (0, 0, 0))
            ux, uy = to_px(p["uniform_bits"], p[key])
            qx, qy = to_px(p["prior_bits"], p[key])
            draw.ellipse((ux - 4, uy - 4, ux + 4, uy + 4), outline=colour, width=2)
            draw.ellipse((qx - 4, qy - 4, qx + 4, qy + 4), fill=colour)
            draw.text((ux + 5, uy + 2), f"{p['mode']} M{p['M']}", fill=colour)
    legend = [("JPEG file", COLOURS["jpeg_file"]), ("JPEG scan", COLOURS["jpeg_scan"]), ("DQ", COLOURS["dq"]),
              ("VQ baseline", COLOURS["vq"]), ("single VQ", COLOURS["single"])]  # fmt: skip
    for i, (label, colour) in enumerate(legend):
        draw.rectangle((20 + 140 * i, height - 18, 32 + 140 * i, height - 8), fill=colour)
        draw.text((36 + 140 * i, height - 20), label, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default="cifar10")
    parser.add_argument("--runs", type=Path, required=True, help="bench/dq_study.py's --root")
    parser.add_argument(
        "--max-images", type=int, default=None, help="JPEG side: the first N validation images"
    )
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None)
    args = parser.parse_args()
    tick = time.perf_counter()
    jpeg, n = jpeg_points(args.data, args.max_images)
    dq = dq_points(args.runs)
    print(
        "| codec | setting | bits/image (file or uniform) | bits/image (scan or prior) | PSNR RGB | PSNR Y |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for p in jpeg:
        print(
            f"| JPEG | q{p['quality']} | {p['file_bits']:.0f} | {p['scan_bits']:.0f} | {p['psnr_rgb']:.2f} | {p['psnr_y']:.2f} |"
        )
    for p in dq:
        print(
            f"| {p['mode']} | {p['run']} | {p['uniform_bits']:.0f} | {p['prior_bits']:.0f} | {p['psnr_rgb']:.2f} | {p['psnr_y']:.2f} |"
        )
    result = {"images": n, "jpeg": jpeg, "dq": dq, "seconds": time.perf_counter() - tick,
              "encoder": f"Pillow {Image.__version__} (libjpeg), 4:2:0, IJG tables, no optimize"}  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    if args.plot:
        plot(jpeg, dq, args.plot)


if __name__ == "__main__":
    main()
