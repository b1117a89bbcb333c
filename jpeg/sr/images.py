"""Reading the images of super-resolution data sets: HR originals (PNG, BMP, JPEG, TIFF) and LR inputs.

Every image comes back as uint8 [H, W, 3] RGB (or [H, W, 1] Y for Y-only models). What is refused, with a
message naming the file and the fix: files Pillow cannot read, CMYK images (print separations, not
display RGB), images with an alpha channel (what is under the transparent parts is undefined), and
grayscale images where colour is needed (`gray="error"`: training an RGB model, which would learn colour
from copies of one channel). Evaluation and prediction read grayscale images as RGB with three equal
channels (`gray="rgb"`), as EDSR-PyTorch and BasicSR do for Set14's grayscale image, so its Y is
16 + 219 * g / 255. Palette images are converted to RGB.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ...common.errors import DataError

IMAGE_EXTENSIONS = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")
GRAYSCALE_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")

BT601_Y = (65.481, 128.553, 24.966)


def rgb_to_y_uint8(rgb: np.ndarray) -> np.ndarray:
    """[H, W, 3] uint8 RGB -> [H, W, 1] uint8 BT.601 luma (studio swing 16..235, rounded), MATLAB's rgb2ycbcr."""
    y = 16.0 + (rgb.astype(np.float64) / 255.0) @ np.array(BT601_Y)
    return np.floor(y + 0.5).clip(0, 255).astype(np.uint8)[..., None]


def read_image(path: Path | str, channels: int = 3, gray: str = "error") -> np.ndarray:
    """The image at `path` as uint8 [H, W, channels] (3: RGB, 1: its BT.601 Y channel).

    gray: what a grayscale image becomes for channels 3: "error" (refused) or "rgb" (three equal channels).
    Raises DataError naming the file: unreadable or not an image; CMYK or with alpha; grayscale with
    gray="error" (a Y-only model takes the luma of any image).
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode == "P":
                img = img.convert("RGBA" if "transparency" in img.info else "RGB")
                mode = img.mode
            if mode in GRAYSCALE_MODES:
                if channels == 1 and mode in ("L", "1"):
                    luma = np.asarray(img.convert("L"), dtype=np.float64)
                    return (16 + np.floor(luma * 219 / 255 + 0.5)).astype(np.uint8)[..., None]
                if gray == "rgb" and mode in ("L", "1"):
                    return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))
                raise DataError(
                    f"{path} is a grayscale image (mode {mode}); RGB super-resolution needs colour images: "
                    "remove it from the folder, or convert it to RGB first (e.g. Image.open(f).convert('RGB'))"
                )
            if mode == "CMYK":
                raise DataError(
                    f"{path} is a CMYK image (print colours); convert it to RGB first "
                    "(e.g. Image.open(f).convert('RGB')) or remove it from the folder"
                )
            if mode in ("RGBA", "LA", "PA", "RGBa"):
                raise DataError(
                    f"{path} has an alpha channel (mode {mode}); flatten it onto a background and save it as RGB, "
                    "or remove it from the folder"
                )
            if mode != "RGB":
                raise DataError(f"{path} has the unsupported colour mode {mode}; save it as 8-bit RGB")
            rgb = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(
            f"{path} is not a readable image ({type(exc).__name__}: {exc}); remove it or re-save it as PNG"
        ) from None
    return rgb_to_y_uint8(rgb) if channels == 1 else np.ascontiguousarray(rgb)


def list_images(folder: Path | str) -> list[Path]:
    """The image files under `folder` (recursively, sorted; hidden entries skipped).

    Raises DataError when `folder` is missing or holds no image file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"image folder {folder} does not exist or is not a folder")
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix.lower() in IMAGE_EXTENSIONS
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    if not files:
        raise DataError(
            f"{folder} holds no image file ({', '.join(IMAGE_EXTENSIONS)}); give a folder of HR images "
            "or one of the named sets (sr, set5, set14)"
        )
    return files


def modcrop(image: np.ndarray, scale: int) -> np.ndarray:
    """`image` [H, W, C] cropped at the bottom/right to sides that are multiples of `scale` (the SR
    literature's 'modcrop'). Raises DataError when nothing would be left."""
    h, w = image.shape[0] - image.shape[0] % scale, image.shape[1] - image.shape[1] % scale
    if h == 0 or w == 0:
        raise DataError(f"an image of {image.shape[1]}x{image.shape[0]} is smaller than the scale {scale}")
    return image[:h, :w]


def save_image(path: Path | str, image: np.ndarray, *, fmt_from: Path | str | None = None) -> None:
    """Write uint8 [H, W, 3] (RGB) or [H, W, 1] (Y) to `path`, in the format of `fmt_from`'s suffix (default
    `path`'s; a temporary file of an atomic write takes the final name's). The caller makes it atomic.

    Raises DataError for a suffix that names no image format."""
    array = image[..., 0] if image.shape[-1] == 1 else image
    fmt = image_format(Path(fmt_from if fmt_from is not None else path))
    Image.fromarray(np.ascontiguousarray(array)).save(path, format=fmt)


def image_format(path: Path) -> str:
    """The Pillow format name for an image path suffix (.png, .jpg, .bmp, .tif). Raises DataError otherwise."""
    formats = {".png": "PNG", ".bmp": "BMP", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF"}
    fmt = formats.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"{path}: cannot tell the image format from the suffix; use .png (lossless) or .jpg")
    return fmt
