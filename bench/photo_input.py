"""Benchmark: the cost of feeding photographs to 224-px models (jpeg/input_policy.py, issue 16 item 5).

Images per CPU second of this process (one thread; the machine may be shared: runs of all variants are
interleaved and the median of --runs runs is reported, with ratios to the plain coefficient read), over
all files and per chroma layout, on
scikit-image's public-domain photographs (astronaut, coffee, chelsea, rocket, hubble_deep_field, retina)
re-encoded at IJG quality 90 in 4:2:0, 4:2:2, 4:4:0 and 4:4:4, at their own sizes (300x451 to 1411x1411)
and at 512x680:

  evaluation   read             read_jpeg alone (the coefficients as stored; no resize: the floor)
               policy-auto      the DCT model's policy (resize 256, centre 224): DCT-domain 1/2, 1/4, 1/8 where
                                it lands within 15%, else decode-resize-re-encode with the file's tables
               policy-pixels    always decode-resize-re-encode (the exact view)
               rgb              Pillow decode + resize + centre crop + ImageNet normalisation (RGB models)
  training     rrc-dct          DctResizedCrop: torchvision's box snapped to MCUs, power-of-two downscale, flip
               rrc-pixels       PixelResizedCrop: decode, exact RandomResizedCrop, flip, re-encode, read
               rrc-rgb          decode, RandomResizedCrop, flip, normalise (what RGB models train on)

    .venv/bin/python bench/photo_input.py [--runs 5] [--out docs/results/photo_input.json]
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
from PIL import Image

from dctq.common.files import write_text_atomic
from dctq.jpeg.dataset import preprocess_dct
from dctq.jpeg.input_policy import InputPolicy, default_policy, fit_dct, fit_rgb
from dctq.jpeg.pixel_augment import PixelResizedCrop
from dctq.jpeg.reader import read_jpeg
from dctq.jpeg.rgb import decode_rgb, preprocess_rgb
from dctq.jpeg.transforms import DctResizedCrop, draw_box

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "retina")
LAYOUTS = {"4:2:0": "4:2:0", "4:2:2": "4:2:2", "4:4:4": "4:4:4", "4:4:0": "4:4:0"}


def _encode(rgb: np.ndarray, layout: str, quality: int = 90) -> bytes:
    if layout == "4:4:0":  # Pillow writes no 4:4:0; libjpeg does through jpeglib
        import tempfile
        from pathlib import Path

        import jpeglib

        im = jpeglib.from_spatial(np.ascontiguousarray(rgb))
        im.samp_factor = "4:4:0"
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "p.jpg"
            im.write_spatial(str(path), qt=quality)
            return path.read_bytes()
    buf = io.BytesIO()
    Image.fromarray(rgb).save(
        buf, format="JPEG", quality=quality, subsampling={"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}[layout]
    )
    return buf.getvalue()


def photo_set() -> list[tuple[str, bytes]]:
    """(layout, JPEG bytes): every photograph at its own size and at 512x680, in every layout."""
    import skimage.data

    out = []
    for name in PHOTOS:
        rgb = np.ascontiguousarray(getattr(skimage.data, name)()[..., :3])
        small = np.asarray(Image.fromarray(rgb).resize((680, 512), Image.LANCZOS))
        for pixels in (rgb, small):
            for layout in LAYOUTS:
                out.append((layout, _encode(pixels, layout)))
    return out


def variants(
    policy: InputPolicy, rgb_policy: InputPolicy
) -> dict[str, Callable[[bytes, np.random.Generator], object]]:
    pixels_policy = InputPolicy("dct", 224, resize=256, dct_resize="pixels")
    rrc_dct, rrc_pixels = DctResizedCrop(224), PixelResizedCrop(224)

    def rgb_eval(data: bytes, rng: np.random.Generator) -> object:
        rgb, _ = decode_rgb(data)
        rgb, _ = fit_rgb(rgb, rgb_policy)
        return preprocess_rgb(rgb, 224, rgb_policy.mean, rgb_policy.std)

    def rgb_rrc(data: bytes, rng: np.random.Generator) -> object:
        rgb, _ = decode_rgb(data)
        top, left, h, w = draw_box(rgb.shape[0], rgb.shape[1], rng)
        out = np.asarray(
            Image.fromarray(rgb).resize((224, 224), Image.BILINEAR, box=(left, top, left + w, top + h))
        )
        out = out[:, ::-1] if rng.random() < 0.5 else out
        return preprocess_rgb(np.ascontiguousarray(out), 224, rgb_policy.mean, rgb_policy.std)

    return {
        "read": lambda d, r: read_jpeg(d),
        "policy-auto": lambda d, r: preprocess_dct(fit_dct(d, policy)[0], 224),
        "policy-pixels": lambda d, r: preprocess_dct(fit_dct(d, pixels_policy)[0], 224),
        "rgb": rgb_eval,
        "rrc-dct": lambda d, r: preprocess_dct(rrc_dct(read_jpeg(d), r), 224),
        "rrc-pixels": lambda d, r: preprocess_dct(read_jpeg(rrc_pixels(d, r)), 224),
        "rrc-rgb": rgb_rrc,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    photos = photo_set()
    policy, rgb_policy = default_policy("dct", 224), default_policy("rgb", 224)
    methods = collections.Counter(f"{lay} {fit_dct(d, policy)[1].method}" for lay, d in photos)
    fns = variants(policy, rgb_policy)
    groups = {"all": photos, **{lay: [p for p in photos if p[0] == lay] for lay in LAYOUTS}}
    rates: dict[str, dict[str, list[float]]] = {g: {k: [] for k in fns} for g in groups}
    for _ in range(args.runs):
        for name, fn in fns.items():  # interleaved: every run times every variant once
            rng = np.random.default_rng(0)
            spent = collections.Counter()
            for layout, data in photos:
                start = time.process_time()
                fn(data, rng)
                spent[layout] += time.process_time() - start
            for group, items in groups.items():
                seconds = sum(spent.values()) if group == "all" else spent[group]
                rates[group][name].append(len(items) / seconds)
    medians = {g: {k: statistics.median(v) for k, v in r.items()} for g, r in rates.items()}
    result = {
        "images": len(photos),
        "runs": args.runs,
        "machine": f"{platform.processor() or platform.machine()}, shared, 1 thread, process CPU time",
        "auto_methods": dict(methods),
        "images_per_cpu_second": medians,
        "relative_to_read": {g: {k: v / m["read"] for k, v in m.items()} for g, m in medians.items()},
    }
    text = json.dumps(result, indent=2) + "\n"
    print(text)
    if args.out:
        write_text_atomic(args.out, text)


if __name__ == "__main__":
    main()
