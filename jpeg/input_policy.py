"""Input policies: how a JPEG of any size and any supported subsampling becomes a model's input, chosen per
model and recorded in its checkpoint (extra["input_policy"], models/checkpoint.py).

The view a policy asks for is the usual evaluation protocol: the shorter side resized to `resize` pixels,
then the centre `size` x `size` (ImageNet: 256 then 224); `resize` None takes the file as it is and centre
crops or pads it to `size` (CIFAR-size models, whose files already have the model's size).

DCT models keep the promise of no full decode where they can (`dct_resize`):
- "dct": downscaling by 1/2, 1/4 or 1/8 happens in the DCT domain: each 2x2 pixel group averaged by the
  exact linear map of chroma.py (PAIR_MAP), applied to the dequantized coefficients once per halving and
  re-quantized once with the file's own tables (round half away from zero; the one loss, as in the 4:4:4
  chroma map). The factor is the largest power of two that keeps the shorter side >= `resize`; the image
  is then between `resize` and twice it, and the centre crop keeps correspondingly less of it. No
  upscaling: a file smaller than `resize` is centre-cropped (or padded) as it is.
- "pixels": decode (Pillow), resize the shorter side to `resize` exactly (antialiased bilinear), centre
  crop, re-encode with the file's own quant tables (4:2:0), read the coefficients: the exact view, at the
  cost of one decode and one encode.
- "auto" (the default): "dct" when the power-of-two factor lands the shorter side within `tolerance`
  (15%) of `resize` (including factor 1: a file already about the right size), else "pixels" (other
  factors, and upscaling).
RGB models: decode, resize the shorter side to `resize` (antialiased bilinear), centre crop, normalise
with the policy's mean/std (ImageNet statistics for ImageNet-size models, CIFAR-10's for CIFAR-size).

Every placement of the centre crop on the block grid moves in whole MCUs (16 px), and blocks added around a
smaller image are zero (flat mid-grey). A fit whose view differs from the policy's (padding; cropping
without the resize the policy asks for; a DCT factor that leaves more than `tolerance` extra) carries a
`note`, which the callers log as a warning (`dctq predict` prints it per image).
"""

from __future__ import annotations

import dataclasses
import io
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..common.config import Config, check
from ..common.errors import ConfigError, CorruptJpegError, DctqError, NotAJpegError
from .chroma import PAIR_MAP, round_half_away
from .coefficients import JpegCoefficients
from .geometry import block_grid, fit_block_grid, pad_to_mcu
from .reader import read_jpeg, read_jpeg_file

logger = logging.getLogger(__name__)

DCT_RESIZE = ("auto", "dct", "pixels")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR10_MEAN = (125.3 / 255, 123.0 / 255, 113.9 / 255)
CIFAR10_STD = (63.0 / 255, 62.1 / 255, 66.7 / 255)
CROP_FRACTION = 0.875
"""ImageNet's evaluation crop: the centre 224 of the shorter side resized to 256 (224 / 256)."""
PHOTO_SIZE = 96
"""From this input size on a model is taken to read photographs (resize + centre crop, ImageNet statistics);
below it, files of the model's own size (CIFAR: crop/pad only, CIFAR-10 statistics)."""


@dataclass(frozen=True)
class InputPolicy(Config):
    """How a file becomes the input of a model (see the module docstring); saved in checkpoints and sidecars.

    kind: "dct" or "rgb"; size: the square input in pixels (a multiple of 16 for DCT models);
    resize: the shorter side before the centre crop, or None (no resize); dct_resize: "auto", "dct" or
    "pixels" (DCT models); tolerance: how far "auto" lets a DCT-domain factor miss `resize`;
    mean / std: per-channel normalisation of [0, 1] pixels (RGB models; None for DCT models, whose stem
    normalises coefficients with statistics of its own).
    """

    kind: str = "dct"
    size: int = 32
    resize: int | None = None
    dct_resize: str = "auto"
    tolerance: float = 0.15
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None

    VERSION = 1
    READS = (1,)
    error = ConfigError

    def __post_init__(self) -> None:
        check(self.kind in ("dct", "rgb"), f"InputPolicy.kind must be 'dct' or 'rgb', got {self.kind!r}")
        check(
            isinstance(self.size, int) and self.size > 0,
            f"InputPolicy.size must be > 0 px, got {self.size!r}",
        )
        check(
            self.kind == "rgb" or self.size % 16 == 0,
            f"a DCT input size is a multiple of 16, got {self.size}",
        )
        check(
            self.resize is None or (isinstance(self.resize, int) and self.resize >= self.size),
            f"InputPolicy.resize must be None or >= size {self.size}, got {self.resize!r}",
        )
        check(
            self.dct_resize in DCT_RESIZE,
            f"InputPolicy.dct_resize must be one of {DCT_RESIZE}, got {self.dct_resize!r}",
        )
        check(0 <= self.tolerance < 1, f"InputPolicy.tolerance must be in [0, 1), got {self.tolerance}")
        if self.kind == "rgb":
            for name in ("mean", "std"):
                value = getattr(self, name)
                check(
                    value is not None and len(value) == 3,
                    f"an RGB InputPolicy needs 3 {name} values, got {value!r}",
                )
                object.__setattr__(self, name, tuple(float(v) for v in value))
            check(min(self.std) > 0, f"InputPolicy.std must be > 0, got {self.std}")  # type: ignore[arg-type]


def default_policy(kind: str, size: int) -> InputPolicy:
    """The policy a new model of this input kind and size gets (recorded when it is trained):
    photographs from PHOTO_SIZE px on (resize to size / 0.875, ImageNet statistics), files of the model's own
    size below (no resize, CIFAR-10 statistics: exactly `legacy_policy`)."""
    if size < PHOTO_SIZE:
        return legacy_policy(kind, size)
    stats = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD} if kind == "rgb" else {}
    return InputPolicy(kind, size, resize=round(size / CROP_FRACTION), **stats)


def legacy_policy(kind: str, size: int) -> InputPolicy:
    """What dctq did before policies were recorded (and so what a checkpoint without one was trained with):
    no resize, centre crop or pad; RGB normalised with CIFAR-10's statistics."""
    stats = {"mean": CIFAR10_MEAN, "std": CIFAR10_STD} if kind == "rgb" else {}
    return InputPolicy(kind, size, **stats)


def policy_from(extra: dict[str, Any] | None, kind: str, size: int) -> InputPolicy:
    """The policy recorded in a checkpoint's or sidecar's `extra` ("input_policy"), else the legacy one.

    Raises ConfigError for a recorded policy this dctq cannot read, or one of another input kind/size.
    """
    saved = (extra or {}).get("input_policy")
    if not saved:
        return legacy_policy(kind, size)
    policy = InputPolicy.from_dict(saved)
    if (policy.kind, policy.size) != (kind, size):
        raise ConfigError(
            f"the recorded input policy is for {policy.kind} input at {policy.size} px, but the model reads "
            f"{kind} at {size} px; the checkpoint is damaged"
        )
    return policy


# ---------------------------------------------------------------------------------------------- fitting


@dataclass(frozen=True)
class Fit:
    """What was done to one file: its size, the method ("none", "dct/2", "dct/4", "dct/8", "pixels"), the size
    after resizing, whether the centre crop cut content or padding was added, and the warning, if any."""

    source: tuple[int, int]
    method: str
    resized: tuple[int, int]
    cropped: bool
    padded: bool
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _plan(policy: InputPolicy, height: int, width: int) -> tuple[str, int]:
    """(method, DCT factor) for a file of height x width under `policy` (DCT models)."""
    short, target = min(height, width), policy.resize
    if target is None or short == target:
        return "none", 1
    factor = 1
    while factor < 8 and short / (2 * factor) >= target:
        factor *= 2
    if policy.dct_resize == "dct":
        return ("none" if factor == 1 else f"dct/{factor}"), factor
    if policy.dct_resize == "auto":
        ratio = short / factor / target
        if 1 / (1 + policy.tolerance) <= ratio <= 1 + policy.tolerance:
            return ("none" if factor == 1 else f"dct/{factor}"), factor
    return "pixels", 1


def _note(source: str, policy: InputPolicy, fit: Fit) -> str | None:
    h, w = fit.source
    rh, rw = fit.resized
    if fit.padded:
        return (
            f"{source}: {h}x{w} px is smaller than the {policy.size} px input"
            + (f" after resizing to {rh}x{rw}" if fit.method != "none" else "")
            + "; padded with flat grey"
            + (" (the mean colour)" if policy.kind == "rgb" else "")
        )
    if policy.resize is None and fit.cropped:
        return f"{source}: {h}x{w} px cropped to its centre {policy.size}x{policy.size} (this model's input policy does not resize)"
    if policy.resize is not None and fit.cropped:
        short = min(rh, rw)
        if short > policy.resize * (1 + policy.tolerance):
            return (
                f"{source}: {h}x{w} px only downscaled to {rh}x{rw} ({fit.method}; the policy asks for a shorter side "
                f"of {policy.resize}), so the centre crop keeps {policy.size / short:.0%} of it instead of "
                f"{policy.size / policy.resize:.0%}"
            )
    return None


_PAIR_MATRIX = PAIR_MAP.transpose(1, 0, 2).reshape(8, 16)  # out frequency <- (source block, in frequency)


def halve(blocks: np.ndarray) -> np.ndarray:
    """One plane's dequantized blocks [64, R, C] downscaled by 2 in the DCT domain: chroma.downsample_444's
    exact separable map (odd grids padded by edge replication), as two matrix products, about twice as fast
    as its einsum on one plane (equal to ~1e-15, tested)."""
    r2, c2 = -(-blocks.shape[-2] // 2), -(-blocks.shape[-1] // 2)
    x = np.asarray(fit_block_grid(blocks, 2 * r2, 2 * c2), dtype=np.float64)
    t = x.reshape(8, 8, r2, 2, c2, 2).transpose(3, 0, 1, 2, 4, 5).reshape(16, -1)
    t = (_PAIR_MATRIX @ t).reshape(8, 8, r2, c2, 2).transpose(4, 1, 0, 2, 3).reshape(16, -1)
    return (_PAIR_MATRIX @ t).reshape(8, 8, r2, c2).transpose(1, 0, 2, 3).reshape(64, r2, c2)


def dct_downscale(coefs: JpegCoefficients, factor: int) -> JpegCoefficients:
    """`coefs` downscaled by `factor` (1, 2, 4 or 8) in the DCT domain (see the module docstring): luma and
    chroma dequantized, 2x2-averaged log2(factor) times, re-quantized with the file's own tables."""
    if factor == 1:
        return coefs
    if factor not in (2, 4, 8):
        raise DctqError(f"DCT-domain downscaling takes a factor of 2, 4 or 8, got {factor}")
    qt = coefs.qt.astype(np.float64)
    y = coefs.y.astype(np.float64) * qt[0].reshape(64, 1, 1)
    planes = [y]
    if coefs.cbcr is not None:
        cbcr = coefs.cbcr.astype(np.float64)
        planes += [cbcr[:64] * qt[1].reshape(64, 1, 1), cbcr[64:] * qt[2].reshape(64, 1, 1)]
    for _ in range(int(math.log2(factor))):
        planes = [halve(p) for p in planes]
    quantized = [round_half_away(p / qt[i].reshape(64, 1, 1)) for i, p in enumerate(planes)]
    new_y = np.clip(quantized[0], -32768, 32767).astype(np.int16)
    new_c = None
    if coefs.cbcr is not None:
        new_c = np.clip(np.concatenate(quantized[1:]), -32768, 32767).astype(np.int16)
    new_y, new_c = pad_to_mcu(new_y, new_c)
    height, width = math.ceil(coefs.height / factor), math.ceil(coefs.width / factor)
    hb, wb = block_grid((height, width))
    new_y = new_y[:, :hb, :wb]
    new_c = None if new_c is None else new_c[:, : hb // 2, : wb // 2]
    return dataclasses.replace(coefs, y=new_y, cbcr=new_c, height=height, width=width)


def _pillow_tables(img: Any) -> list[list[int]]:
    tables = img.quantization
    return [tables[k] for k in sorted(tables)]


def resize_shorter(img: Any, target: int) -> Any:
    """A Pillow image with its shorter side resized to `target` px (antialiased bilinear, as torchvision)."""
    from PIL import Image

    w, h = img.size
    scale = target / min(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return img.resize(size, Image.BILINEAR) if size != (w, h) else img


def center_box(height: int, width: int, size: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the centre size x size window (Pillow's crop box; may reach outside)."""
    top, left = (height - size) // 2, (width - size) // 2
    return left, top, left + size, top + size


def reencode_view(data: bytes, policy: InputPolicy, source: str = "<bytes>") -> tuple[bytes, tuple[int, int]]:
    """(JPEG bytes of the policy's exact view, the resized size): decode, resize the shorter side, centre crop
    to `size` (mid-grey outside a smaller image), re-encode with the file's own tables at 4:2:0."""
    from PIL import Image

    if not data.startswith(b"\xff\xd8"):
        raise NotAJpegError(f"{source} is not a JPEG file (starts with {data[:4]!r})")
    try:
        with Image.open(io.BytesIO(data)) as src:
            src.load()
            tables = _pillow_tables(src)
            img = src.convert("L" if src.mode == "L" else "RGB")
    except (OSError, ValueError, SyntaxError) as exc:
        raise CorruptJpegError(f"{source}: Pillow cannot decode it ({exc})") from exc
    if policy.resize is not None:
        img = resize_shorter(img, policy.resize)
    resized = (img.size[1], img.size[0])
    canvas = Image.new(img.mode, (policy.size, policy.size), 128 if img.mode == "L" else (128, 128, 128))
    left, top, _, _ = center_box(resized[0], resized[1], policy.size)
    canvas.paste(img, (-left, -top))
    out = io.BytesIO()
    kwargs: dict[str, Any] = {"qtables": tables}
    if canvas.mode != "L":
        kwargs["subsampling"] = 2
    canvas.save(out, format="JPEG", **kwargs)
    return out.getvalue(), resized


def fit_dct(
    data: bytes | Path | str, policy: InputPolicy, *, source: str | None = None, window: bool = True
) -> tuple[JpegCoefficients, Fit]:
    """The coefficients of `data` (bytes or a path) as `policy` views them, not yet cropped to the grid of
    `policy.size` (callers crop after any augmentation: dataset.preprocess_dct), and the Fit. With `window`
    (callers that apply no augmentation before the crop) a policy without a resize keeps only the centre
    crop's blocks while reading (the reader's fit_grid), so a large file costs the crop, not the image.

    Raises the reader's JpegError subclasses naming `source` (or the path).
    """
    name = source or (str(data) if not isinstance(data, bytes) else "<bytes>")
    read = read_jpeg
    fit_grid = block_grid((policy.size, policy.size)) if window and policy.resize is None else None
    coefs = read(data, fit_grid=fit_grid)
    h, w = coefs.height, coefs.width
    method, factor = _plan(policy, h, w)
    if method == "pixels":
        raw = data if isinstance(data, bytes) else read_jpeg_file(data)
        view, resized = reencode_view(raw, policy, name)
        coefs = dataclasses.replace(read(view), source=name)
        cropped = resized != (policy.size, policy.size) and max(resized) > policy.size
        fit = Fit((h, w), method, resized, cropped, min(resized) < policy.size)
    else:
        coefs = dct_downscale(coefs, factor)
        resized = (coefs.height, coefs.width)
        fit = Fit((h, w), method, resized, max(resized) > policy.size, min(resized) < policy.size)
    return coefs, dataclasses.replace(fit, note=_note(name, policy, fit))


def fit_rgb(rgb: np.ndarray, policy: InputPolicy, *, source: str = "<bytes>") -> tuple[np.ndarray, Fit]:
    """[H, W, 3] uint8 -> the policy's view before the centre crop ([H', W', 3] uint8, shorter side resized),
    and the Fit (the crop/pad itself: jpeg.rgb.preprocess_rgb)."""
    from PIL import Image

    h, w = rgb.shape[:2]
    method = "none"
    if policy.resize is not None and min(h, w) != policy.resize:
        rgb = np.asarray(resize_shorter(Image.fromarray(rgb), policy.resize))
        method = "pixels"
    resized = (int(rgb.shape[0]), int(rgb.shape[1]))
    fit = Fit((h, w), method, resized, max(resized) > policy.size, min(resized) < policy.size)
    return rgb, dataclasses.replace(fit, note=_note(source, policy, fit))
