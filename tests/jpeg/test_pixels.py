"""jpeg/pixels.py: coefficients back to pixels, against Pillow's (libjpeg-turbo's) own decode."""

from __future__ import annotations

import math

import jpeglib
import numpy as np
import pytest
from PIL import Image

from dctq.jpeg.pixels import psnr, to_pixels, upsample_h2v2_fancy, ycbcr_to_rgb_u8
from dctq.jpeg.reader import read_jpeg


@pytest.mark.parametrize(
    "height,width,quality,progressive",
    [(32, 32, 75, False), (33, 47, 90, False), (17, 9, 50, True), (48, 32, 95, True), (5, 3, 75, False)],
)
def test_rgb_420_matches_pillow(make_jpeg, height, width, quality, progressive):
    path = make_jpeg("c.jpg", height, width, seed=1, quality=quality, subsampling=2, progressive=progressive)
    coefs = read_jpeg(path)
    assert coefs.subsampling == "4:2:0" and coefs.progressive == progressive
    ours = to_pixels(coefs)
    ref = np.asarray(Image.open(path).convert("RGB"))
    assert ours.shape == (height, width, 3) and ours.dtype == np.uint8
    # Only the IDCT differs (float here, libjpeg's integer islow there): a level or two, rarely.
    assert psnr(ours, ref) >= 50
    assert np.abs(ours.astype(int) - ref).max() <= 4


@pytest.mark.parametrize("height,width,progressive", [(32, 32, False), (17, 40, True)])
def test_gray_matches_pillow(make_jpeg, height, width, progressive):
    path = make_jpeg("g.jpg", height, width, seed=2, quality=80, mode="L", progressive=progressive)
    ours = to_pixels(read_jpeg(path))
    ref = np.asarray(Image.open(path))
    assert ours.shape == (height, width) and ours.dtype == np.uint8
    assert psnr(ours, ref) >= 50


@pytest.mark.parametrize("height,width", [(33, 47), (17, 9), (6, 5), (4, 4)])
def test_dc_only_file_decodes_bit_exactly(make_jpeg, tmp_path, height, width):
    """With only DC terms every IDCT is exact, so upsampling (edges included) and colour conversion must
    reproduce libjpeg bit for bit."""
    src = make_jpeg("src.jpg", height, width, seed=3, quality=75, subsampling=2)
    im = jpeglib.read_dct(str(src))
    for comp in (im.Y, im.Cb, im.Cr):
        dc = comp[:, :, 0, 0].copy()
        comp[:] = 0
        comp[:, :, 0, 0] = dc
    path = tmp_path / "dc.jpg"
    im.write_dct(str(path))
    ours = to_pixels(read_jpeg(path))
    np.testing.assert_array_equal(ours, np.asarray(Image.open(path).convert("RGB")))


def test_fancy_upsampling_weights():
    plane = np.array([[0, 160, 0], [0, 0, 0]], dtype=np.uint8)
    up = upsample_h2v2_fancy(plane)
    assert up.shape == (4, 6)
    # Output (0, 2) sits nearest the 160 sample: weight 9/16 from it after edge replication upward
    # (above = itself, so 12/16), 3/16 from its left neighbour: (3*(3*160+160) + (3*0+0) + 8) >> 4.
    assert up[0, 2] == (3 * (4 * 160) + 0 + 8) >> 4
    assert up[2, 2] == (3 * (3 * 0 + 160) + 0 + 8) >> 4
    assert up[3, 0] == 0
    # Narrow planes (<= 2 wide) are replicated, as libjpeg-turbo does.
    np.testing.assert_array_equal(upsample_h2v2_fancy(plane[:, :2]), np.kron(plane[:, :2], np.ones((2, 2))))


def test_colour_conversion_matches_pillow():
    rng = np.random.default_rng(0)
    ycc = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    ref = np.asarray(Image.frombytes("YCbCr", (16, 16), ycc.tobytes()).convert("RGB"))
    ours = ycbcr_to_rgb_u8(ycc[..., 0], ycc[..., 1], ycc[..., 2])
    # Pillow's own converter (not libjpeg's) rounds slightly differently.
    assert np.abs(ours.astype(int) - ref).max() <= 1


def test_psnr():
    a = np.zeros((4, 4), np.uint8)
    assert psnr(a, a) == math.inf
    b = a.copy()
    b[0, 0] = 16  # mse = 16
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 16))
    with pytest.raises(ValueError):
        psnr(a, np.zeros((4, 5)))
