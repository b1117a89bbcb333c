"""Benchmark: reading JPEG DCT coefficients (dctq.jpeg.reader) against the fastest full decoders.

Per-file timings. Every file of a set is read by every reader in turn (A, B, C, A, B, C, ...: readers
interleaved on the same bytes, then the next file), for --rounds rounds; each timing is the CPU time of
`reps` calls in a row (reps sized so that one timing lasts about --sample-ms), divided by reps. Per file and
reader the median over rounds is kept; a reader's speed against another is the **median over files of the
per-file ratio** of their medians (with the 10th-90th percentile range of those ratios). CPU time of this
process (time.process_time) rather than wall time, because the machine is shared.

Readers (those installed):
  read_jpeg           dctq.jpeg.reader.read_jpeg(bytes): the contract's arrays (4:4:4 / 4:2:2 chroma mapped
                      onto the 4:2:0 grid in C)
  read_jpeg numpy map the reader before this change for 4:4:4 / 4:2:2 (read_blocks, then chroma.assemble_420's
                      float64 numpy map); 4:4:4 / 4:2:2 sets only
  C call alone        _turbo.read_coefficients(grid=True): what read_jpeg costs without its Python
  Huffman only        _turbo.entropy_decode: libjpeg's jpeg_read_coefficients, nothing copied out: the
                      floor of any coefficient reader built on libjpeg
  simplejpeg          simplejpeg.decode_jpeg(bytes) to RGB uint8 (its bundled libjpeg-turbo)
  PyTurboJPEG         TurboJPEG().decode(bytes) to RGB uint8 (the system libturbojpeg)
  Pillow              np.asarray(Image.open(BytesIO(b)).convert("RGB"))

Sets (size x layout): 224x224, native-size photographs (~500x375) and 1024x768, each in 4:2:0, 4:2:2 and
4:4:4, made with Pillow from real photographs (see photographs()), plus CIFAR-10's 32x32 files.

    .venv/bin/python bench/jpeg_read.py [--sets ...] [--rounds 7] [--out results.json]
    .venv/bin/python bench/jpeg_read.py --accept          # the share of a realistic set read_jpeg accepts
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one thread everywhere, numpy's BLAS included

import argparse  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tarfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from dctq.common.errors import JpegError  # noqa: E402
from dctq.common.files import write_text_atomic  # noqa: E402
from dctq.jpeg.chroma import assemble_420  # noqa: E402
from dctq.jpeg.reader import read_blocks, read_jpeg  # noqa: E402

# scikit-image's colour photographs (public domain or CC0, shipped in its data module).
SKIMAGE_PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
)
QUALITIES = (75, 85, 95)
SUBSAMPLING = {"420": 2, "422": 1, "444": 0}
SIZES = {"224": (224, 224), "native": (500, 375), "1024": (1024, 768)}


def _data_root() -> Path:
    """$DCTQ_DATA, else the first shared/data above this file (the project keeps shared/ beside its trees)."""
    if "DCTQ_DATA" in os.environ:
        return Path(os.environ["DCTQ_DATA"])
    here = Path(__file__).resolve()
    return next(
        (p / "shared" / "data" for p in here.parents if (p / "shared" / "data").is_dir()), here.parent
    )


def source_photographs(limit: int) -> list[tuple[str, Image.Image]]:
    """Real photographs as RGB images: the shared BSD200 set (Berkeley segmentation photographs, 481x321 or
    321x481, PNG) when present, then scikit-image's; at most `limit`, spread over the sources."""
    out: list[tuple[str, Image.Image]] = []
    archive = _data_root() / "sr" / "train-bsd200-yang91.tar"
    if archive.is_file():
        with tarfile.open(archive) as tar:
            members = sorted(
                (m for m in tar if m.name.startswith("bsd200/") and m.name.endswith(".png")),
                key=lambda m: m.name,
            )
            step = max(1, len(members) // max(1, limit - len(SKIMAGE_PHOTOS)))
            for m in members[::step][: max(0, limit - len(SKIMAGE_PHOTOS))]:
                img = Image.open(io.BytesIO(tar.extractfile(m).read())).convert("RGB")
                out.append((m.name, img))
    import skimage.data

    for name in SKIMAGE_PHOTOS[: max(0, limit - len(out))]:
        rgb = getattr(skimage.data, name)()
        out.append((f"skimage/{name}", Image.fromarray(np.ascontiguousarray(rgb[..., :3]))))
    return out


def fit(img: Image.Image, width: int, height: int, native: bool) -> Image.Image:
    """`img` for a set of width x height. native: the photograph at its own resolution when its long side is
    at most 640 px (BSD200's 481x321, chelsea's 451x300, ...), else a centre crop of width x height (height x
    width for a portrait source) at its own resolution: never resampled. Otherwise: centre-cropped to the
    aspect, resized with LANCZOS."""
    w, h = img.size
    if native:
        if max(w, h) <= 640:
            return img
        if h > w:
            width, height = height, width
        left, top = (w - width) // 2, (h - height) // 2
        return img.crop((left, top, left + width, top + height))
    scale = min(w / width, h / height)
    cw, ch = round(width * scale), round(height * scale)
    left, top = (w - cw) // 2, (h - ch) // 2
    return img.crop((left, top, left + cw, top + ch)).resize((width, height), Image.LANCZOS)


def photographs(size: str, layout: str, photos: list[tuple[str, Image.Image]]) -> list[tuple[str, bytes]]:
    """One file per photograph: fitted to the size, saved by Pillow at a quality cycling through 75, 85,
    95, in the layout, baseline with standard Huffman tables."""
    width, height = SIZES[size]
    out = []
    for i, (name, img) in enumerate(photos):
        quality = QUALITIES[i % len(QUALITIES)]
        buf = io.BytesIO()
        fit(img, width, height, size == "native").save(
            buf, format="JPEG", quality=quality, subsampling=SUBSAMPLING[layout]
        )
        out.append((f"{name} q{quality}", buf.getvalue()))
    return out


def cifar_files(n: int) -> list[tuple[str, bytes]] | None:
    archive = _data_root() / "cifar10-jpeg" / "train.tar.gz"
    if not archive.is_file():
        print(f"cifar32: skipped, no {archive}", file=sys.stderr)
        return None
    out = []
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            if member.isfile() and member.name.lower().endswith(".jpg"):
                out.append((member.name, tar.extractfile(member).read()))
                if len(out) == n:
                    break
    return out


def numpy_map_reader(data: bytes):
    """read_jpeg as it was before the C map, for 4:4:4 / 4:2:2 files: blocks as stored, numpy map."""
    b = read_blocks(data)
    (hy, vy), (hc, vc) = b.sampling[0], b.sampling[1]
    return assemble_420(
        list(b.components), [(hy // hc, vy // vc), (1, 1), (1, 1)], list(b.qt), b.height, b.width
    )


def readers(layout: str) -> dict[str, Callable[[bytes], object]]:
    """The readers installed here, by name (see the module docstring)."""
    out: dict[str, Callable[[bytes], object]] = {"read_jpeg": read_jpeg}
    if layout in ("422", "444"):
        out["read_jpeg numpy map"] = numpy_map_reader
    try:
        from dctq.jpeg import _turbo
        from dctq.jpeg.reader import MAX_COEFFICIENT_BYTES
    except ImportError:
        print("dctq.jpeg._turbo is not built: no C-call or Huffman-only rows", file=sys.stderr)
    else:
        out["C call alone"] = lambda b: _turbo.read_coefficients(b, MAX_COEFFICIENT_BYTES, True)
        out["Huffman only"] = _turbo.entropy_decode
    try:
        import simplejpeg
    except ImportError:
        print("simplejpeg not installed (pip install -e '.[dev]')", file=sys.stderr)
    else:
        out["simplejpeg"] = simplejpeg.decode_jpeg
    try:
        from turbojpeg import TJPF_RGB, TurboJPEG

        tj = TurboJPEG()
    except (ImportError, OSError, RuntimeError) as exc:
        print(f"PyTurboJPEG unavailable ({str(exc).splitlines()[0]})", file=sys.stderr)
    else:
        out["PyTurboJPEG"] = lambda b: tj.decode(b, pixel_format=TJPF_RGB)
    out["Pillow"] = lambda b: np.asarray(Image.open(io.BytesIO(b)).convert("RGB"))
    return out


FULL_DECODERS = ("simplejpeg", "PyTurboJPEG", "Pillow")


def time_set(
    files: list[tuple[str, bytes]], fns: dict[str, Callable], rounds: int, sample_ms: float
) -> dict[str, list[float]]:
    """Per reader, per file: the median over `rounds` of the CPU seconds per call (see the module docstring)."""
    reps = []
    for _, data in files:  # warm-up, which also sizes each file's repetitions (by the slowest reader)
        slowest = 0.0
        for fn in fns.values():
            t0 = time.process_time()
            fn(data)
            slowest = max(slowest, time.process_time() - t0)
        reps.append(max(1, min(200, round(sample_ms / 1e3 / max(slowest, 1e-6)))))
    samples = {name: [[] for _ in files] for name in fns}
    for _ in range(rounds):
        for i, (_, data) in enumerate(files):
            for name, fn in fns.items():
                t0 = time.process_time()
                for _ in range(reps[i]):
                    fn(data)
                samples[name][i].append((time.process_time() - t0) / reps[i])
    return {name: [statistics.median(s) for s in per_file] for name, per_file in samples.items()}


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def summarise(name: str, files: list[tuple[str, bytes]], times: dict[str, list[float]]) -> dict:
    """Medians per reader, and per-file ratios: each reader's speed against read_jpeg and the fastest full decode."""
    n = len(files)
    fastest = [min(times[d][i] for d in FULL_DECODERS if d in times) for i in range(n)]
    row: dict = {
        "set": name,
        "files": n,
        "mean_kib": round(sum(len(b) for _, b in files) / n / 1024, 1),
        "median_ms": {r: statistics.median(t) * 1e3 for r, t in times.items()},
        "fastest_full_decoder_per_file": {
            d: sum(1 for i in range(n) if d in times and times[d][i] == fastest[i]) for d in FULL_DECODERS
        },
    }
    ratios = {}
    for reader, t in times.items():
        r = [fastest[i] / t[i] for i in range(n)]
        ratios[reader] = {"median": statistics.median(r), "p10": _pct(r, 10), "p90": _pct(r, 90)}
    row["speed_vs_fastest_full_decode"] = ratios
    rj = times["read_jpeg"]
    row["read_jpeg_speed_vs"] = {
        d: statistics.median([times[d][i] / rj[i] for i in range(n)]) for d in times if d != "read_jpeg"
    }
    if "Huffman only" in times:
        # Ceiling: a coefficient reader can do no better than libjpeg's Huffman pass.
        c = [fastest[i] / times["Huffman only"][i] for i in range(n)]
        row["ceiling_vs_fastest_full_decode"] = {
            "median": statistics.median(c),
            "p10": _pct(c, 10),
            "p90": _pct(c, 90),
        }
    row["per_file_ms"] = {r: [round(x * 1e3, 4) for x in t] for r, t in times.items()}
    row["file_names"] = [f for f, _ in files]
    return row


def markdown(rows: list[dict]) -> str:
    names = ["read_jpeg", "read_jpeg numpy map", "C call alone", "Huffman only", *FULL_DECODERS]
    present = [n for n in names if any(n in r["median_ms"] for r in rows)]
    head = "| set | files (KiB) | " + " | ".join(f"{n} ms" for n in present)
    head += " | read_jpeg vs fastest full (p10-p90) | ceiling (Huffman only vs fastest) |"
    lines = [head, "|" + "---|" * (len(present) + 4)]
    for r in rows:
        cells = [f"{r['median_ms'][n]:.3f}" if n in r["median_ms"] else "" for n in present]
        s = r["speed_vs_fastest_full_decode"]["read_jpeg"]
        c = r.get("ceiling_vs_fastest_full_decode")
        ceiling = f"{c['median']:.2f}x" if c else ""
        lines.append(
            f"| {r['set']} | {r['files']} ({r['mean_kib']}) | "
            + " | ".join(cells)
            + f" | **{s['median']:.2f}x** ({s['p10']:.2f}-{s['p90']:.2f}) | {ceiling} |"
        )
    return "\n".join(lines)


# ---- the share of a realistic set that read_jpeg accepts ----


def acceptance(photos: list[tuple[str, Image.Image]]) -> dict:
    """Files of every kind Pillow writes (and what jpegtran/cjpeg write, when installed), each read by
    read_jpeg: accepted, or refused with the reader's reason. The 'realistic set' is the photographs in the
    mix below; every refusal must be a file the coefficient contract cannot represent."""
    kinds: list[tuple[str, dict]] = [
        ("baseline 4:2:0 q75", {"quality": 75, "subsampling": 2}),
        ("baseline 4:2:0 q95", {"quality": 95, "subsampling": 2}),
        ("baseline 4:2:2 q90", {"quality": 90, "subsampling": 1}),
        ("baseline 4:4:4 q90", {"quality": 90, "subsampling": 0}),
        ("progressive 4:2:0", {"quality": 85, "subsampling": 2, "progressive": True}),
        ("progressive 4:4:4", {"quality": 85, "subsampling": 0, "progressive": True}),
        ("optimised Huffman 4:2:0", {"quality": 85, "subsampling": 2, "optimize": True}),
        ("restart markers 4:2:0", {"quality": 85, "subsampling": 2, "restart_marker_blocks": 4}),
        ("grayscale", {"quality": 85, "mode": "L"}),
        ("CMYK (Adobe)", {"quality": 85, "mode": "CMYK"}),
        ("with EXIF + ICC", {"quality": 85, "subsampling": 2, "exif": True}),
    ]
    results = []
    for i, (name, img) in enumerate(photos):
        kind, opts = kinds[i % len(kinds)]
        opts = dict(opts)
        mode = opts.pop("mode", "RGB")
        if opts.pop("exif", False):
            exif = Image.Exif()
            exif[0x010F] = "dctq bench"
            from PIL import ImageCms

            opts["exif"] = exif.tobytes()
            opts["icc_profile"] = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
        buf = io.BytesIO()
        fit(img, 500, 375, True).convert(mode).save(buf, format="JPEG", **opts)
        results.append(_try_read(f"{name} ({kind})", kind, "Pillow", buf.getvalue()))
    results.extend(_tool_made(photos[0][1]))
    accepted = sum(r["accepted"] for r in results if r["maker"] == "Pillow")
    pillow = sum(r["maker"] == "Pillow" for r in results)
    return {"files": results, "pillow_accepted": accepted, "pillow_files": pillow}


def _try_read(name: str, kind: str, maker: str, data: bytes) -> dict:
    try:
        coef = read_jpeg(data)
    except JpegError as exc:
        return {"file": name, "kind": kind, "maker": maker, "accepted": False, "reason": str(exc)}
    return {"file": name, "kind": kind, "maker": maker, "accepted": True, "layout": coef.subsampling}


def _tool_made(img: Image.Image) -> list[dict]:
    """Kinds Pillow cannot write, made with libjpeg-turbo's command-line tools when they are installed
    (Debian: libjpeg-turbo-progs): arithmetic coding, 4:1:1, 4:4:0, and an RGB-coded (untransformed) file."""
    import shutil
    import tempfile

    out = []
    if shutil.which("cjpeg") is None or shutil.which("jpegtran") is None:
        print(
            "cjpeg/jpegtran not installed: arithmetic, 4:1:1, 4:4:0 and RGB-coded files not made",
            file=sys.stderr,
        )
        return out
    with tempfile.TemporaryDirectory() as tmp:
        ppm = Path(tmp) / "in.ppm"
        fit(img, 500, 375, True).save(ppm)
        jobs = [
            ("arithmetic coding", ["cjpeg", "-quality", "85", "-arithmetic", str(ppm)]),
            ("4:1:1 (cjpeg -sample 4x1)", ["cjpeg", "-quality", "85", "-sample", "4x1", str(ppm)]),
            ("4:4:0 (cjpeg -sample 1x2)", ["cjpeg", "-quality", "85", "-sample", "1x2", str(ppm)]),
            ("RGB-coded (cjpeg -rgb)", ["cjpeg", "-quality", "85", "-rgb", str(ppm)]),
        ]
        for kind, cmd in jobs:
            done = subprocess.run(cmd, capture_output=True, check=False)
            if done.returncode == 0:
                out.append(_try_read(kind, kind, "cjpeg", done.stdout))
    return out


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    return next(
        (line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name:")),
        "unknown",
    )


def versions() -> dict:
    out = {"python": platform.python_version(), "numpy": np.__version__, "pillow": Image.__version__}
    for mod in ("simplejpeg", "turbojpeg"):
        try:
            out[mod] = __import__(mod).__version__
        except (ImportError, AttributeError):
            pass
    try:
        from dctq.jpeg import _turbo

        out["dctq._turbo libjpeg-turbo"] = getattr(_turbo, "LIBJPEG_TURBO_VERSION_NUMBER", None)
    except ImportError:
        pass
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    all_sets = [f"{s}-{lay}" for s in SIZES for lay in SUBSAMPLING]
    parser.add_argument(
        "--sets", default=",".join(all_sets), help=f"comma-separated, of {', '.join(all_sets)}, cifar32"
    )
    parser.add_argument("--photos", type=int, default=24, help="photographs per set (default 24)")
    parser.add_argument("--cifar-files", type=int, default=200, help="CIFAR files in the cifar32 set")
    parser.add_argument(
        "--rounds", type=int, default=7, help="interleaved rounds; the median per file is kept (>= 5)"
    )
    parser.add_argument("--sample-ms", type=float, default=2.0, help="about how long one timing lasts")
    parser.add_argument(
        "--accept", action="store_true", help="report which files read_jpeg accepts, then stop"
    )
    parser.add_argument("--out", type=Path, help="also write the results as JSON to this file")
    args = parser.parse_args(argv)
    if args.rounds < 5 and not args.accept:
        parser.error("--rounds must be at least 5 (the median of fewer is too noisy)")
    photos = source_photographs(args.photos)
    meta = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "versions": versions(),
        "load_average_1min_before": os.getloadavg()[0],
    }
    if args.accept:
        result = {"meta": meta, "acceptance": acceptance(photos)}
        for r in result["acceptance"]["files"]:
            print(
                f"{'accepted' if r['accepted'] else 'REFUSED '} {r['file']}: {r.get('layout') or r['reason']}"
            )
        a = result["acceptance"]
        print(f"Pillow-made files accepted: {a['pillow_accepted']} of {a['pillow_files']}")
    else:
        rows = []
        for name in args.sets.split(","):
            if name == "cifar32":
                files = cifar_files(args.cifar_files)
                layout = "420"
            else:
                size, layout = name.split("-")
                files = photographs(size, layout, photos)
            if not files:
                continue
            t0 = time.perf_counter()
            rows.append(summarise(name, files, time_set(files, readers(layout), args.rounds, args.sample_ms)))
            print(f"{name}: {time.perf_counter() - t0:.0f} s, load {os.getloadavg()[0]:.1f}", file=sys.stderr)
        print(markdown(rows))
        result = {"meta": meta, "rows": rows}
    meta["load_average_1min_after"] = os.getloadavg()[0]
    print(
        f"load average (1 min): {meta['load_average_1min_before']:.1f} before, {meta['load_average_1min_after']:.1f} after",
        file=sys.stderr,
    )
    if args.out:
        write_text_atomic(args.out, json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
