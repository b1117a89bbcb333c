"""jpeg.pixel_augment: pad/crop/flip in pixels, re-encoded with the file's own tables."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from dctq.common.errors import CorruptJpegError, DctqError, NotAJpegError
from dctq.jpeg.dataset import JpegFolder
from dctq.jpeg.pixel_augment import PixelCropFlip
from dctq.jpeg.reader import read_jpeg
from dctq.jpeg.recompress import ijg_quant_tables


def decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB")).astype(np.float64)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / max(np.mean((a - b) ** 2), 1e-12)))


@pytest.mark.parametrize(("subsampling", "quality"), [(2, 75), (0, 90), (1, 50)])
def test_unmoved_image_keeps_tables_layout_and_coefficients(make_jpeg, subsampling, quality):
    src = make_jpeg(height=48, width=64, seed=3, quality=quality, subsampling=subsampling).read_bytes()
    out = PixelCropFlip(pad=0, flip_p=0.0)(src, np.random.default_rng(0))
    a, b = read_jpeg(src), read_jpeg(out)
    np.testing.assert_array_equal(a.qt, b.qt)
    assert a.y.shape == b.y.shape and a.cbcr.shape == b.cbcr.shape
    # Same tables: re-quantizing an already quantized luma block changes (almost) nothing.
    assert (a.y == b.y).mean() > 0.99


def test_gray_files_stay_gray_with_their_table(make_jpeg):
    src = make_jpeg(height=32, width=32, quality=60, mode="L").read_bytes()
    out = read_jpeg(PixelCropFlip()(src, np.random.default_rng(1)))
    assert out.is_gray and np.array_equal(out.qt[0], read_jpeg(src).qt[0])


def test_flip_mirrors_the_pixels(make_jpeg):
    src = make_jpeg(height=32, width=32, seed=5, quality=90).read_bytes()
    out = PixelCropFlip(pad=0, flip_p=1.0)(src, np.random.default_rng(0))
    assert psnr(decode(out), decode(src)[:, ::-1]) > 35.0
    assert psnr(decode(out), decode(src)) < 25.0


def test_crop_is_a_window_of_the_reflect_padded_image_and_offsets_vary(make_jpeg):
    src = make_jpeg(height=32, width=32, seed=7, quality=95).read_bytes()
    pixels = decode(src)
    padded = np.pad(pixels, ((4, 4), (4, 4), (0, 0)), mode="reflect")
    rng = np.random.default_rng(3)
    offsets = set()
    for _ in range(12):
        out = decode(PixelCropFlip(pad=4, flip_p=0.0)(src, rng))
        scores = {(t, x): psnr(out, padded[t : t + 32, x : x + 32]) for t in range(9) for x in range(9)}
        best = max(scores, key=scores.get)
        assert scores[best] > 33.0
        offsets.add(best)
    assert len(offsets) >= 5


def test_quality_argument_writes_ijg_tables(make_jpeg):
    src = make_jpeg(height=32, width=32, quality=75).read_bytes()
    out = read_jpeg(PixelCropFlip()(src, np.random.default_rng(0), quality=20))
    np.testing.assert_array_equal(out.qt, ijg_quant_tables(20))
    assert out.y.shape == (64, 4, 4) and out.cbcr.shape == (128, 2, 2)


def test_bad_inputs_say_what_is_wrong(make_jpeg):
    aug, rng = PixelCropFlip(), np.random.default_rng(0)
    png = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(png, format="PNG")
    with pytest.raises(NotAJpegError, match="SOI"):
        aug(png.getvalue(), rng)
    good = make_jpeg(height=32, width=32).read_bytes()
    with pytest.raises(CorruptJpegError, match="truncated or damaged"):
        aug(good[: len(good) // 3], rng)
    cmyk = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).convert("CMYK").save(cmyk, format="JPEG")
    with pytest.raises(DctqError, match="CMYK"):
        aug(cmyk.getvalue(), rng)
    with pytest.raises(DctqError, match="quality"):
        aug(good, rng, quality=0)
    with pytest.raises(DctqError, match="pad"):
        PixelCropFlip(pad=-1)


def test_jpeg_folder_augments_training_samples_only(jpeg_folder):
    aug = PixelCropFlip(pad=4)
    train = JpegFolder(jpeg_folder, input_size=32, train=True, transforms=None, pixel_augment=aug, seed=0)
    plain = JpegFolder(jpeg_folder, input_size=32, train=False, transforms=None, pixel_augment=aug)
    for i in range(len(train)):
        t, p = train[i], plain[i]
        assert t.y.shape == p.y.shape == (64, 4, 4) and t.cbcr.shape == (128, 2, 2)
        assert np.array_equal(t.qt.numpy(), p.qt.numpy()) and t.quality == p.quality == 75
        direct = read_jpeg(train.samples[i].path)
        np.testing.assert_array_equal(p.y.numpy(), direct.y)
    moved = sum(not np.array_equal(train[i].y.numpy(), plain[i].y.numpy()) for i in range(len(train)))
    assert moved >= len(train) - 1


def test_train_data_crop_choice(jpeg_folder):
    from dctq.calibration.train.data import dataset_for_arch
    from dctq.jpeg.recompress import QualityPolicy
    from dctq.jpeg.rgb import RgbJpegFolder
    from dctq.jpeg.samples import list_samples

    samples, _ = list_samples(jpeg_folder)
    dct = dataset_for_arch(
        "dct_cifar_deconv", jpeg_folder, samples, train=True, policy=QualityPolicy(), augment="crop"
    )
    assert (
        isinstance(dct, JpegFolder) and dct.pixel_augment == PixelCropFlip(pad=4) and dct.transforms is None
    )
    assert dct[0].y.shape == (64, 4, 4)
    rgb = dataset_for_arch(
        "resnet20", jpeg_folder, samples, train=True, policy=QualityPolicy(), augment="crop"
    )
    assert isinstance(rgb, RgbJpegFolder)
