"""Sets of real photographs as JPEG files for the speed benchmarks, made from scikit-image's bundled
public-domain colour photographs (skimage.data: astronaut, chelsea, coffee, rocket, hubble_deep_field,
immunohistochemistry, retina, stereo_motorcycle).

`photo_set(folder, n, size)` writes `n` files of `size` (width, height) pixels as an ImageFolder (one
class folder per source photograph): file i is a random crop of a source photograph (seeded; at a
random scale between the largest crop of the target aspect and 60% of it), resized with Pillow's
Lanczos filter to `size` and re-encoded by Pillow (libjpeg) at a quality drawn from `qualities`,
4:2:0 chroma, baseline, no restart markers. Sizes in the benchmarks: 500x375 (ImageNet-style camera
photos) and 224x224 (files already at the model's input size).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SOURCES = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "stereo_motorcycle",
)


def _sources() -> dict[str, np.ndarray]:
    import skimage.data

    out = {}
    for name in SOURCES:
        img = getattr(skimage.data, name)()
        img = img[0] if isinstance(img, tuple) else img
        out[name] = np.ascontiguousarray(img[..., :3])
    return out


def photo_set(
    folder: Path,
    n: int,
    size: tuple[int, int],
    *,
    qualities: tuple[int, ...] = (75, 85, 90, 95),
    seed: int = 0,
) -> list[Path]:
    """Write `n` JPEG photographs of `size` (width, height) under `folder`/<source>/; returns their paths
    (existing files of the same name are reused, so a set is made once)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    sources = _sources()
    names = list(sources)
    width, height = size
    paths = []
    for i in range(n):
        name = names[i % len(names)]
        quality = int(qualities[int(rng.integers(len(qualities)))])
        path = folder / name / f"{i:05d}_q{quality}.jpg"
        img = sources[name]
        h, w = img.shape[:2]
        full = min(w / width, h / height)  # the largest crop of the target aspect
        scale = full * rng.uniform(0.6, 1.0)
        cw, ch = int(width * scale), int(height * scale)
        x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        paths.append(path)
        if path.exists():
            continue
        crop = Image.fromarray(img[y0 : y0 + ch, x0 : x0 + cw]).resize(size, Image.Resampling.LANCZOS)
        path.parent.mkdir(parents=True, exist_ok=True)
        crop.save(path, "JPEG", quality=quality, subsampling=2, optimize=False)
    return paths


def main() -> None:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", type=Path)
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--size", default="500x375", help="WIDTHxHEIGHT (default 500x375)")
    args = p.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    print(len(photo_set(args.folder, args.n, (w, h))), "files in", args.folder)


if __name__ == "__main__":
    main()
