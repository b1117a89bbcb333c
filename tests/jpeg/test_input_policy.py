"""Input policies on real photographs (scikit-image's, re-encoded at several sizes and subsamplings): the
DCT-domain downscale is the block DCT of averaged pixels, the re-encoded view is Pillow's resize + centre
crop, every crop or pad beyond the policy's view carries a note, and the policy travels in checkpoints."""

from __future__ import annotations

import io
import logging

import numpy as np
import pytest
from helpers import photo_jpeg
from PIL import Image

from dctq.common.errors import ConfigError
from dctq.jpeg.chroma import downsample_444, round_half_away
from dctq.jpeg.dataset import JpegFolder, preprocess_dct
from dctq.jpeg.dct import block_dct, block_idct
from dctq.jpeg.input_policy import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    InputPolicy,
    dct_downscale,
    default_policy,
    fit_dct,
    fit_rgb,
    halve,
    legacy_policy,
    policy_from,
)
from dctq.jpeg.pixel_augment import PixelResizedCrop
from dctq.jpeg.pixels import psnr, to_pixels
from dctq.jpeg.reader import read_jpeg
from dctq.jpeg.rgb import RgbJpegFolder
from dctq.jpeg.transforms import DctResizedCrop, draw_box

PHOTO_224 = default_policy("dct", 224)


def test_policies_per_model_size():
    assert PHOTO_224 == InputPolicy("dct", 224, resize=256)
    rgb = default_policy("rgb", 224)
    assert (rgb.resize, rgb.mean, rgb.std) == (256, IMAGENET_MEAN, IMAGENET_STD)
    assert default_policy("rgb", 32) == legacy_policy("rgb", 32) and default_policy("dct", 32).resize is None
    assert InputPolicy.from_dict(rgb.to_dict()) == rgb
    assert policy_from({}, "dct", 224) == legacy_policy("dct", 224)  # a checkpoint from before policies
    assert policy_from({"input_policy": rgb.to_dict()}, "rgb", 224) == rgb
    with pytest.raises(ConfigError, match="damaged"):
        policy_from({"input_policy": rgb.to_dict()}, "rgb", 32)
    with pytest.raises(ConfigError, match="3 mean values"):
        InputPolicy("rgb", 32)
    with pytest.raises(ConfigError, match="resize must be None or >= size"):
        InputPolicy("dct", 224, resize=200)


@pytest.mark.parametrize("shape", [(64, 4, 6), (64, 3, 5), (64, 1, 1)])
def test_halve_is_the_chroma_map(shape):
    """The one-plane fast path is chroma.downsample_444's map, odd grids included."""
    x = np.random.default_rng(0).normal(0, 50, shape)
    np.testing.assert_allclose(halve(x), downsample_444(x), atol=1e-9)


@pytest.mark.parametrize("factor", [2, 4, 8])
@pytest.mark.parametrize("subsampling", ["4:2:0", "4:4:4", "gray"])
def test_dct_downscale_is_the_dct_of_averaged_pixels(factor, subsampling):
    """Exact on the block grid: the only difference from averaging the decoded-without-rounding pixels is the
    final re-quantization with the file's own tables."""
    coefs = read_jpeg(photo_jpeg("coffee", (200, 296), subsampling=subsampling))
    small = dct_downscale(coefs, factor)
    assert (small.height, small.width) == (-(-200 // factor), -(-296 // factor))
    qt = coefs.qt.astype(np.float64)
    planes = [(coefs.y, qt[0])] + (
        [] if coefs.cbcr is None else [(coefs.cbcr[:64], qt[1]), (coefs.cbcr[64:], qt[2])]
    )
    got = [small.y] + ([] if small.cbcr is None else [small.cbcr[:64], small.cbcr[64:]])
    for (plane, table), out in zip(planes, got, strict=True):
        pixels = block_idct(plane.astype(np.float64) * table.reshape(64, 1, 1))
        h, w = pixels.shape
        pad = np.zeros((-(-h // (8 * factor)) * 8 * factor, -(-w // (8 * factor)) * 8 * factor))
        pad[:h, :w] = pixels
        avg = pad.reshape(pad.shape[0] // factor, factor, pad.shape[1] // factor, factor).mean(axis=(1, 3))
        ref = round_half_away(block_dct(avg) / table.reshape(64, 1, 1))
        rows, cols = min(ref.shape[1], out.shape[1]), min(ref.shape[2], out.shape[2])
        np.testing.assert_array_equal(out[:, :rows, :cols], ref[:, :rows, :cols])
    assert small.y.shape[1] % 2 == 0 and small.y.shape[2] % 2 == 0  # whole MCUs


@pytest.mark.parametrize(
    ("size", "subsampling", "method", "cropped", "padded", "note"),
    [
        ((512, 512), "4:2:0", "dct/2", True, False, None),  # exactly 256 after one halving, then the 224 crop
        ((520, 700), "4:2:2", "dct/2", True, False, None),  # 260: within the 15% tolerance
        ((1040, 1100), "4:4:0", "dct/4", True, False, None),
        ((427, 640), "4:4:4", "pixels", True, False, None),  # 427 / 256 is no power of two
        ((150, 200), "4:2:0", "pixels", True, False, None),  # upscaled by re-encoding
        ((256, 256), "gray", "none", True, False, None),
    ],
)
def test_auto_policy_resizes_photographs_in_the_dct_domain_where_it_can(
    size, subsampling, method, cropped, padded, note
):
    data = photo_jpeg("astronaut", size, subsampling=subsampling)
    coefs, fit = fit_dct(data, PHOTO_224)
    assert (fit.source, fit.method, fit.cropped, fit.padded, fit.note) == (
        size,
        method,
        cropped,
        padded,
        note,
    )
    inputs = preprocess_dct(coefs, 224)
    assert inputs["y"].shape == (64, 28, 28) and inputs["cbcr"].shape == (128, 14, 14)
    assert min(fit.resized) >= 224


def test_the_views_look_like_pillows_resize_and_centre_crop():
    for size, method in (((512, 512), "dct/2"), ((427, 640), "pixels")):
        data = photo_jpeg("astronaut", size, quality=95)
        coefs, fit = fit_dct(data, PHOTO_224)
        assert fit.method == method
        inputs = preprocess_dct(coefs, 224)
        got = to_pixels(type(coefs)(inputs["y"], inputs["cbcr"], coefs.qt, 224, 224, "4:2:0", False)).astype(
            np.float64
        )
        img = Image.open(io.BytesIO(data)).convert("RGB")
        w, h = img.size
        scale = 256 / min(h, w)
        img = img.resize((round(w * scale), round(h * scale)), Image.BILINEAR)
        # the block-grid crop sits on MCUs: compare with Pillow's crop at the same offset
        top = (img.size[1] // 16 - 14) // 2 * 16 if method.startswith("dct") else (img.size[1] - 224) // 2
        left = (img.size[0] // 16 - 14) // 2 * 16 if method.startswith("dct") else (img.size[0] - 224) // 2
        ref = np.asarray(img.crop((left, top, left + 224, top + 224))).astype(np.float64)
        assert psnr(got, ref) > 28, (method, psnr(got, ref))


def test_notes_say_when_a_file_is_cropped_or_padded():
    _, fit = fit_dct(photo_jpeg("chelsea", (375, 500)), legacy_policy("dct", 224))
    assert (
        fit.cropped
        and "375x500 px cropped to its centre 224x224" in fit.note
        and "does not resize" in fit.note
    )
    forced = InputPolicy("dct", 224, resize=256, dct_resize="dct")
    _, fit = fit_dct(photo_jpeg("chelsea", (427, 640)), forced)
    assert fit.method == "none" and "only downscaled to 427x640" in fit.note
    _, fit = fit_dct(photo_jpeg("chelsea", (120, 160)), forced)
    assert fit.padded and "smaller than the 224 px input" in fit.note


@pytest.mark.parametrize("subsampling", ["4:2:0", "4:4:4", "gray"])
def test_policies_without_a_resize_read_only_the_crop(subsampling):
    """The reader's window (fit_grid) gives the centre crop the whole read would: same inputs, same note."""
    data = photo_jpeg("chelsea", (300, 451), subsampling=subsampling)
    policy = legacy_policy("dct", 224)
    windowed, fit_w = fit_dct(data, policy)
    whole, fit = fit_dct(data, policy, window=False)
    assert windowed.y.shape[-2:] == (28, 28) and whole.y.shape[-2:] == (38, 58)
    assert fit_w == fit and fit.note is not None and "cropped" in fit.note
    a, b = preprocess_dct(windowed, 224), preprocess_dct(whole, 224)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_rgb_models_resize_crop_and_normalise_with_their_statistics():
    policy = default_policy("rgb", 224)
    pixels = np.asarray(Image.open(io.BytesIO(photo_jpeg("rocket", (427, 640)))).convert("RGB"))
    resized, fit = fit_rgb(pixels, policy)
    assert resized.shape[:2] == (256, 384) and fit.method == "pixels" and fit.note is None


def test_datasets_apply_the_policy_and_warn_once(tmp_path, caplog):
    root = tmp_path / "photos"
    for i, (name, size) in enumerate(
        (("chelsea", (300, 451)), ("coffee", (400, 600)), ("rocket", (120, 180)))
    ):
        (root / name).mkdir(parents=True)
        (root / name / f"{i}.jpg").write_bytes(
            photo_jpeg(name, size, subsampling=("4:2:0", "4:2:2", "4:4:0")[i])
        )
    data = JpegFolder(
        root, input_size=224, train=False, input_policy=InputPolicy("dct", 224, resize=256, dct_resize="dct")
    )
    with caplog.at_level(logging.DEBUG, logger="dctq.jpeg.dataset"):
        samples = [data[i] for i in range(len(data))]
    assert all(s.y.shape == (64, 28, 28) for s in samples)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "further such notes" in warnings[0].getMessage()
    rgb = RgbJpegFolder(root, input_size=224, train=False, input_policy=default_policy("rgb", 224))
    x = rgb[0].x
    assert x.shape == (3, 224, 224) and abs(float(x.mean())) < 3  # ImageNet-normalised


def test_random_resized_crops_in_both_domains():
    rng = np.random.default_rng(0)
    for _ in range(20):
        top, left, h, w = draw_box(300, 451, rng)
        assert 0 <= top <= 300 - h and 0 <= left <= 451 - w and h > 0 and w > 0
    coefs = read_jpeg(photo_jpeg("chelsea", (600, 902)))
    crop = DctResizedCrop(224)
    for seed in range(5):
        out = crop(coefs, np.random.default_rng(seed))
        inputs = preprocess_dct(out, 224)
        assert inputs["y"].shape == (64, 28, 28)
    a, b = crop(coefs, np.random.default_rng(1)), crop(coefs, np.random.default_rng(1))
    assert np.array_equal(a.y, b.y)  # reproducible from the generator
    data = PixelResizedCrop(224)(photo_jpeg("chelsea", (300, 451)), np.random.default_rng(0))
    again = read_jpeg(data)
    assert (again.height, again.width) == (224, 224)
