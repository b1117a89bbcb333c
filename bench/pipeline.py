"""End to end on the CPU with ONNX Runtime: JPEG bytes -> top-1 label, DCT pipeline against RGB pipeline.

Pipelines (each stage timed on its own; files are read into memory first, so "read" is the decoder):
- dct: `read_jpeg(bytes, fit_grid=28x28)` (coefficients; a larger photograph is centre-cropped on the
  block grid, MCU-aligned, at its own scale: the 224x224 middle of a 500x375 photo) -> `preprocess_dct`
  + stacking to the contract's float32 y/cbcr/qt batch -> the INT8 DCT net.
- dct_reencode: the other way to fit a larger photo at full field of view: simplejpeg decode (scaled
  to >= 256) -> resize 256 + centre crop 224 -> re-encode at quality 90 (Pillow) -> `read_jpeg` ->
  the INT8 DCT net (read = decode + resize + encode + coefficient read).
- rgb: simplejpeg (libjpeg-turbo; scaled DCT decode to >= 256 px, as Pillow's draft mode) -> resize
  the short side to 256 (Pillow bilinear) + centre crop 224 + normalise (ImageNet mean/std) to float32
  NCHW -> the INT8 RGB ResNet-50.
- rgb_pillow: the same with Pillow's decoder (draft mode) instead of simplejpeg.
Models: the `ort` backend's sessions (rewrite included) of INT8 .onnx files (bench/ort_224.py's exports:
untrained weights, PTQ on 16 photographs; speed does not depend on the weights).

Modes: "1 process" runs read -> preprocess -> inference per batch in turn; "pool N" has N reader
processes (multiprocessing, fork) read + preprocess batches ahead while the main process runs the one
session; images/s = images / wall time. Variants run interleaved, round by round; medians reported.

    OMP_NUM_THREADS=2 nice -n 10 .venv/bin/python bench/pipeline.py --dct dct.onnx --rgb rgb.onnx \\
        --photos photos500 --photos photos224 --batches 1,32 --threads 2 --pools 0,2 --json out.json
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from dctq.common.files import write_text_atomic
from dctq.deploy.artifact import load_artifact
from dctq.deploy.backends.ort import OrtRunner
from dctq.jpeg.dataset import preprocess_dct
from dctq.jpeg.reader import read_jpeg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import int_list

SIZE = 224
GRID = (SIZE // 8, SIZE // 8)
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(1, 3, 1, 1) * 255.0
INV_STD = 1.0 / (np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(1, 3, 1, 1) * 255.0)


# ------------------------------------------------------------------------------------ stages


def _resize_crop(rgb: np.ndarray) -> np.ndarray:
    """[H, W, 3] uint8 -> short side 256 (bilinear) -> centre 224x224 crop, uint8."""
    from PIL import Image

    h, w = rgb.shape[:2]
    scale = 256 / min(h, w)
    nh, nw = max(SIZE, round(h * scale)), max(SIZE, round(w * scale))
    img = Image.fromarray(rgb)
    if (nh, nw) != (h, w):
        img = img.resize((nw, nh), Image.Resampling.BILINEAR)
    top, left = (nh - SIZE) // 2, (nw - SIZE) // 2
    return np.asarray(img.crop((left, top, left + SIZE, top + SIZE)))


def decode_simplejpeg(data: bytes) -> np.ndarray:
    import simplejpeg

    return simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=256, min_width=256)


def decode_pillow(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        img.draft("RGB", (256, 256))  # libjpeg's scaled decode: the largest 1/8..1 scale >= 256
        return np.asarray(img.convert("RGB"))


def rgb_batch(crops: list[np.ndarray]) -> dict[str, np.ndarray]:
    x = np.stack(crops).transpose(0, 3, 1, 2).astype(np.float32)
    x -= MEAN
    x *= INV_STD
    return {"x": x}


def dct_batch(coefs: list[Any]) -> dict[str, np.ndarray]:
    parts = [preprocess_dct(c, SIZE) for c in coefs]
    return {k: np.stack([p[k] for p in parts]).astype(np.float32) for k in ("y", "cbcr", "qt")}


def reencode(data: bytes) -> Any:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(_resize_crop(decode_simplejpeg(data))).save(buf, "JPEG", quality=90)
    return read_jpeg(buf.getvalue(), fit_grid=GRID)


PIPELINES = {
    # name: (read one file, (read results) -> feeds, model kind)
    "dct": (lambda d: read_jpeg(d, fit_grid=GRID), dct_batch, "dct"),
    "dct_reencode": (reencode, dct_batch, "dct"),
    "rgb": (decode_simplejpeg, lambda imgs: rgb_batch([_resize_crop(i) for i in imgs]), "rgb"),
    "rgb_pillow": (decode_pillow, lambda imgs: rgb_batch([_resize_crop(i) for i in imgs]), "rgb"),
}
"""For rgb the resize + crop counts as preprocessing; the decoders' own scaled decode counts as reading."""


def read_and_prepare(job: tuple[str, list[bytes]]) -> tuple[dict[str, np.ndarray], float, float]:
    """(feeds, read seconds, preprocess seconds) of one batch: what a pool worker runs."""
    name, files = job
    read, prepare, _ = PIPELINES[name]
    t0 = time.perf_counter()
    decoded = [read(d) for d in files]
    t1 = time.perf_counter()
    feeds = prepare(decoded)
    return feeds, t1 - t0, time.perf_counter() - t1


# ------------------------------------------------------------------------------------ timing


def _run(session: Any, prepared: Any, batches: list[list[bytes]]) -> dict[str, float]:
    """Stage times per image and images/s of feeding `prepared` ((feeds, read s, prep s) per batch) to `session`."""
    read = prep = infer = 0.0
    t0 = time.perf_counter()
    for feeds, r, p in prepared:
        t1 = time.perf_counter()
        session.run(None, feeds)
        infer += time.perf_counter() - t1
        read, prep = read + r, prep + p
    wall = time.perf_counter() - t0
    n = sum(len(b) for b in batches)
    return {
        "images_per_s": n / wall,
        "read_ms": 1e3 * read / n,
        "prep_ms": 1e3 * prep / n,
        "infer_ms": 1e3 * infer / n,
    }


def run_serial(name: str, session: Any, batches: list[list[bytes]]) -> dict[str, float]:
    # A generator: each batch is read and prepared just before its inference, in this process.
    return _run(session, (read_and_prepare((name, files)) for files in batches), batches)


def run_pool(name: str, session: Any, batches: list[list[bytes]], pool: Any) -> dict[str, float]:
    return _run(session, pool.imap(read_and_prepare, [(name, b) for b in batches]), batches)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dct", type=Path, required=True, help="INT8 .onnx of the DCT model (224 px)")
    p.add_argument("--rgb", type=Path, required=True, help="INT8 .onnx of the RGB ResNet-50 (224 px)")
    p.add_argument(
        "--photos", type=Path, action="append", required=True, help="a folder of JPEGs (repeatable)"
    )
    p.add_argument("--pipelines", default="dct,rgb,rgb_pillow,dct_reencode")
    p.add_argument("--batches", type=int_list, default=[1, 32])
    p.add_argument("--images", type=int, default=64, help="images per pipeline per round at batch > 1")
    p.add_argument("--images-b1", type=int, default=16, help="images per pipeline per round at batch 1")
    p.add_argument("--threads", type=int, default=2, help="ORT intra-op threads")
    p.add_argument("--pools", type=int_list, default=[0, 2], help="reader processes (0: one process)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    names = args.pipelines.split(",")
    runners = {
        kind: OrtRunner(load_artifact(path), threads=args.threads)
        for kind, path in (("dct", args.dct), ("rgb", args.rgb))
    }
    ctx = multiprocessing.get_context("fork")
    pools = {n: ctx.Pool(n) for n in args.pools if n > 0}
    rows: list[dict[str, Any]] = []
    import os

    load = os.getloadavg()
    try:
        for folder in args.photos:
            files = [f.read_bytes() for f in sorted(folder.rglob("*.jpg"))]
            for batch in args.batches:
                count = args.images_b1 if batch == 1 else args.images
                chosen = (files * (1 + count // max(1, len(files))))[:count]
                batches = [chosen[i : i + batch] for i in range(0, count, batch)]
                results: dict[tuple[str, int], list[dict[str, float]]] = {}
                for name in names:  # warm-up: sessions' first runs, imports, pool start
                    run_serial(name, runners[PIPELINES[name][2]].session, batches[:1])
                for _ in range(args.rounds):
                    for pool_n in args.pools:
                        for name in names:
                            session = runners[PIPELINES[name][2]].session
                            r = (
                                run_serial(name, session, batches)
                                if pool_n == 0
                                else run_pool(name, session, batches, pools[pool_n])
                            )
                            results.setdefault((name, pool_n), []).append(r)
                for (name, pool_n), rs in results.items():
                    row = {
                        "photos": folder.name,
                        "batch": batch,
                        "pipeline": name,
                        "pool": pool_n,
                        "threads": args.threads,
                        **{k: statistics.median(r[k] for r in rs) for k in rs[0]},
                        "round_images_per_s": [r["images_per_s"] for r in rs],
                    }
                    rows.append(row)
                    print(
                        f"| {folder.name} | {batch} | {name} | {pool_n or '1 process'} | {row['read_ms']:.2f} | "
                        f"{row['prep_ms']:.2f} | {row['infer_ms']:.2f} | {row['images_per_s']:.1f} |",
                        flush=True,
                    )
    finally:
        for pool in pools.values():
            pool.terminate()
    for row in rows:  # same-run ratio against the rgb pipeline of the same set, batch and mode
        base = next(
            (
                r
                for r in rows
                if r["pipeline"] == "rgb" and all(r[k] == row[k] for k in ("photos", "batch", "pool"))
            ),
            None,
        )
        row["vs_rgb"] = row["images_per_s"] / base["images_per_s"] if base else None
    if args.json:
        out = {
            "args": {k: str(v) for k, v in vars(args).items()},
            "loadavg_start": load,
            "loadavg_end": os.getloadavg(),
            "rows": rows,
        }
        write_text_atomic(args.json, json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
