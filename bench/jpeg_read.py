"""Benchmark: reading JPEG DCT coefficients (dctq.jpeg.reader) vs Pillow's full decode to RGB.

Images per second, one process, one thread, for three sets of files:
  cifar32   the first N files of the shared CIFAR-10 JPEG archive (32x32, IJG q75, 4:2:0); skipped with a
            message when the archive is absent (looked up in $DCTQ_DATA, then ../shared/data)
  photo224  real photographs shipped with scikit-image (astronaut, chelsea, coffee, rocket, ...),
            centre-cropped to the aspect, resized with Pillow LANCZOS, re-encoded at quality 90, 4:2:0
  photo1024 the same photographs at 1024x768

Every reader gets the same in-memory bytes; the coefficient reader is also timed from paths (files
written to a temporary folder, hence read from the page cache). Each run decodes the whole set as
many times as fills about --target-seconds; runs of all readers are interleaved and the median of
--runs runs is reported, per wall-clock second and per CPU second of this process (the latter is
less disturbed by other processes on a shared machine).

    .venv/bin/python bench/jpeg_read.py [--cifar-files 2000] [--runs 5] [--out results.json]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from dctq.common.files import write_text_atomic
from dctq.jpeg.reader import available_backends, read_jpeg

PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "stereo_motorcycle",
)


def cifar_bytes(n: int) -> list[bytes] | None:
    """The first `n` JPEG files of the CIFAR-10 archive, or None (with a message) when it is absent."""
    roots = [Path(os.environ["DCTQ_DATA"])] if "DCTQ_DATA" in os.environ else []
    roots.append(Path(__file__).resolve().parents[1].parent / "shared" / "data")
    for root in roots:
        archive = root / "cifar10-jpeg" / "train.tar.gz"
        if archive.is_file():
            break
    else:
        print(f"cifar32: skipped, no cifar10-jpeg/train.tar.gz under {', '.join(map(str, roots))}")
        return None
    out: list[bytes] = []
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            if member.isfile() and member.name.lower().endswith(".jpg"):
                out.append(tar.extractfile(member).read())
                if len(out) == n:
                    break
    return out


def photo_bytes(width: int, height: int, quality: int = 90) -> list[bytes]:
    """scikit-image's colour photographs as JPEGs of width x height (4:2:0, IJG `quality`)."""
    import skimage.data

    out = []
    for name in PHOTOS:
        rgb = getattr(skimage.data, name)()
        if isinstance(rgb, tuple):  # stereo pairs: the left view
            rgb = rgb[0]
        img = Image.fromarray(np.ascontiguousarray(rgb[..., :3]))
        # Centre-crop to the target aspect so that nothing is stretched.
        w, h = img.size
        scale = min(w / width, h / height)
        cw, ch = round(width * scale), round(height * scale)
        left, top = (w - cw) // 2, (h - ch) // 2
        img = img.crop((left, top, left + cw, top + ch)).resize((width, height), Image.LANCZOS)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=quality, subsampling=2)
        out.append(buf.getvalue())
    return out


def pillow_rgb(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@dataclass
class Case:
    method: str
    source: str
    fn: Callable[[object], object]
    items: list
    repeats: int = 1
    rates: list[float] = field(default_factory=list)
    cpu_rates: list[float] = field(default_factory=list)

    def run(self) -> tuple[float, float]:
        """Time one run (the set `repeats` times); returns (images per wall second, per CPU second)."""
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(self.repeats):
            for item in self.items:
                self.fn(item)
        n = self.repeats * len(self.items)
        return n / (time.perf_counter() - wall), n / max(time.process_time() - cpu, 1e-9)


def time_cases(cases: list[Case], runs: int, target_s: float) -> None:
    """Fill each case's `rates` with `runs` timings of about `target_s` each.

    Runs are interleaved (case A, B, C, A, B, C, ...) so that load from other processes on a shared
    machine falls on every case alike instead of on whichever happened to run then.
    """
    for case in cases:  # warm-up, which also sizes the runs
        case.repeats = max(1, round(target_s * case.run()[0] / len(case.items)))
    for _ in range(runs):
        for case in cases:
            rate, cpu_rate = case.run()
            case.rates.append(rate)
            case.cpu_rates.append(cpu_rate)


def _turbo_call_only() -> Callable[[bytes], object] | None:
    """The C extension's call as read_jpeg makes it, without the header walk, checks and wrapping."""
    try:
        from dctq.jpeg import _turbo
        from dctq.jpeg.reader import MAX_COEFFICIENT_BYTES
    except ImportError:
        return None
    if not hasattr(_turbo, "read_coefficients"):
        return None
    return lambda data: _turbo.read_coefficients(data, MAX_COEFFICIENT_BYTES, True)


def bench_set(name: str, blobs: list[bytes], runs: int, target_s: float, tmp: Path) -> list[dict]:
    folder = tmp / name
    folder.mkdir()
    paths = []
    for i, blob in enumerate(blobs):
        path = folder / f"{i:05d}.jpg"
        path.write_bytes(blob)
        paths.append(path)
    with Image.open(io.BytesIO(blobs[0])) as img:
        size = f"{img.width}x{img.height}"
    mean_kb = sum(map(len, blobs)) / len(blobs) / 1024
    cases = [Case("Pillow decode to RGB uint8", "bytes", pillow_rgb, blobs)]
    for backend in available_backends():

        def read(x, backend=backend):
            return read_jpeg(x, backend=backend)

        cases.append(Case(f"read_jpeg backend={backend}", "bytes", read, blobs))
        cases.append(Case(f"read_jpeg backend={backend}", "path", read, paths))
    c_only = _turbo_call_only()
    if c_only is not None:
        cases.append(Case("_turbo.read_coefficients alone (diagnostic)", "bytes", c_only, blobs))
    time_cases(cases, runs, target_s)
    pillow = statistics.median(cases[0].rates)
    pillow_cpu = statistics.median(cases[0].cpu_rates)
    rows = []
    for case in cases:
        rate = statistics.median(case.rates)
        cpu_rate = statistics.median(case.cpu_rates)
        rows.append(
            {
                "set": name,
                "size": size,
                "files": len(blobs),
                "mean_kib": round(mean_kb, 1),
                "method": case.method,
                "source": case.source,
                "images_per_s": rate,
                "vs_pillow": rate / pillow,
                "images_per_cpu_s": cpu_rate,
                "vs_pillow_cpu": cpu_rate / pillow_cpu,
                "runs_images_per_s": case.rates,
                "runs_images_per_cpu_s": case.cpu_rates,
            }
        )
        print(f"  {name:9s} {case.method:44s} {case.source:5s} {rate:10.0f} images/s", file=sys.stderr)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "| set | image size | files (mean KiB) | method | from | images/s | vs Pillow | images/CPU-s | vs Pillow (CPU) |",
        "|---|---|---|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['set']} | {r['size']} | {r['files']} ({r['mean_kib']}) | {r['method']} | {r['source']} "
            f"| {r['images_per_s']:,.0f} | {r['vs_pillow']:.2f}x "
            f"| {r['images_per_cpu_s']:,.0f} | {r['vs_pillow_cpu']:.2f}x |"
        )
    return "\n".join(lines)


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cifar-files", type=int, default=2000, help="CIFAR files to read (default 2000)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per case; the median is kept (>= 5)")
    parser.add_argument("--target-seconds", type=float, default=0.4, help="about how long one run lasts")
    parser.add_argument("--sets", default="cifar32,photo224,photo1024", help="comma-separated sets to run")
    parser.add_argument("--out", type=Path, help="also write the results as JSON to this file")
    args = parser.parse_args(argv)
    if args.runs < 5:
        parser.error("--runs must be at least 5 (the median of fewer is too noisy)")

    wanted = args.sets.split(",")
    sets: dict[str, list[bytes] | None] = {}
    if "cifar32" in wanted:
        sets["cifar32"] = cifar_bytes(args.cifar_files)
    if "photo224" in wanted:
        sets["photo224"] = photo_bytes(224, 224)
    if "photo1024" in wanted:
        sets["photo1024"] = photo_bytes(1024, 768)

    print(
        f"backends: {', '.join(available_backends())}; cpu: {cpu_model()}, {os.cpu_count()} cores",
        file=sys.stderr,
    )
    # Other processes' load, so that a reader of the results can judge the wall-clock columns.
    load_before = os.getloadavg()[0]
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="dctq-bench-") as tmp:
        for name, blobs in sets.items():
            if blobs:
                rows.extend(bench_set(name, blobs, args.runs, args.target_seconds, Path(tmp)))
    load_after = os.getloadavg()[0]
    print(f"load average (1 min): {load_before:.1f} before, {load_after:.1f} after", file=sys.stderr)
    print(markdown(rows))
    if args.out:
        meta = {
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "pillow": Image.__version__,
            "runs": args.runs,
            "target_seconds": args.target_seconds,
            "load_average_1min": [load_before, load_after],
        }
        write_text_atomic(args.out, json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
