"""jpeg/geometry.py: MCU-aligned crop/pad and the DCT-domain mirror, on numpy and torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dctq.common.errors import DctqError
from dctq.jpeg.dct import BlockGridError, block_dct
from dctq.jpeg.geometry import (
    block_grid,
    center_crop_or_pad,
    fit_block_grid,
    hflip,
    pad_to_mcu,
    random_block_crop,
)
from dctq.jpeg.pixels import psnr, to_pixels
from dctq.jpeg.reader import read_jpeg


def _labelled(hb: int, wb: int, lead: tuple[int, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """y whose every channel holds 1000*row + col of its block (chroma: of its MCU, negated)."""
    rows, cols = np.mgrid[0:hb, 0:wb]
    y = np.broadcast_to(1000 * rows + cols, (*lead, 64, hb, wb)).astype(np.int16)
    mr, mc = np.mgrid[0 : hb // 2, 0 : wb // 2]
    cbcr = np.broadcast_to(-(1000 * mr + mc) - 1, (*lead, 128, hb // 2, wb // 2)).astype(np.int16)
    return y.copy(), cbcr.copy()


def test_hflip_equals_dct_of_mirrored_pixels():
    rng = np.random.default_rng(0)
    luma = rng.uniform(-128, 127, size=(32, 48))  # width a multiple of 16: no padding to move
    chroma = rng.uniform(-128, 127, size=(2, 16, 24))
    y, cbcr = block_dct(luma), block_dct(chroma).reshape(128, 2, 3)
    fy, fc = hflip(y, cbcr)
    np.testing.assert_allclose(fy, block_dct(luma[:, ::-1]), atol=1e-9)
    np.testing.assert_allclose(fc, block_dct(chroma[:, :, ::-1]).reshape(128, 2, 3), atol=1e-9)


def test_hflip_torch_batched_and_involutive():
    x = torch.randn(3, 1, 16, 32, dtype=torch.float64)
    c = torch.randn(3, 2, 8, 16, dtype=torch.float64)
    y, cbcr = block_dct(x).flatten(1, 2), block_dct(c).flatten(1, 2)
    fy, fc = hflip(y, cbcr)
    assert fy.dtype == torch.float64 and fy.shape == y.shape and fc.shape == cbcr.shape
    np.testing.assert_allclose(fy.numpy(), block_dct(x.flip(-1)).flatten(1, 2).numpy(), atol=1e-9)
    np.testing.assert_allclose(fc.numpy(), block_dct(c.flip(-1)).flatten(1, 2).numpy(), atol=1e-9)
    yy, cc = hflip(fy, fc)
    np.testing.assert_allclose(yy.numpy(), y.numpy(), atol=1e-9)
    np.testing.assert_allclose(cc.numpy(), cbcr.numpy(), atol=1e-9)


def test_hflip_int16_signs():
    y, cbcr = _labelled(2, 4)
    fy, fc = hflip(y, cbcr)
    assert fy.dtype == np.int16 and fc.dtype == np.int16
    np.testing.assert_array_equal(fy[0], y[0][:, ::-1])  # DC: reordered only
    np.testing.assert_array_equal(fy[1], -y[1][:, ::-1])  # v = 1: odd, negated
    np.testing.assert_array_equal(fy[8], y[8][:, ::-1])  # u = 1, v = 0: even
    np.testing.assert_array_equal(fc[64 + 3], -cbcr[64 + 3][:, ::-1])  # Cr, v = 3


def test_hflip_of_a_file_decodes_to_the_mirrored_image(make_jpeg):
    path = make_jpeg("f.jpg", 40, 48, seed=4, quality=85, subsampling=2)
    coefs = read_jpeg(path)
    fy, fc = hflip(coefs.y, coefs.cbcr)
    flipped = to_pixels(coefs.__class__(fy, fc, coefs.qt, coefs.height, coefs.width, "4:2:0", False))
    ref = np.asarray(Image.open(path).convert("RGB"))[:, ::-1]
    # The fancy chroma upsampling's alternating +8/+7 rounding is not mirror-symmetric: a level at most.
    assert psnr(flipped, ref) >= 40


def test_center_crop_keeps_the_central_mcus():
    y, cbcr = _labelled(8, 10)
    cy, cc = center_crop_or_pad(y, cbcr, 4, 6)
    assert cy.shape == (64, 4, 6) and cc.shape == (128, 2, 3)
    np.testing.assert_array_equal(cy, y[:, 2:6, 2:8])
    np.testing.assert_array_equal(cc, cbcr[:, 1:3, 1:4])
    # Odd MCU difference: the extra MCU goes from the bottom/right.
    cy, cc = center_crop_or_pad(y, cbcr, 6, 10)
    np.testing.assert_array_equal(cy, y[:, 0:6])
    np.testing.assert_array_equal(cc, cbcr[:, 0:3])


def test_center_pad_and_mixed_axes():
    y, cbcr = _labelled(4, 8)
    py, pc = center_crop_or_pad(y, cbcr, 8, 4)  # pad rows 2 MCUs -> 1 each side; crop cols
    assert py.shape == (64, 8, 4) and pc.shape == (128, 4, 2)
    np.testing.assert_array_equal(py[:, 2:6], y[:, :, 2:6])
    assert not py[:, :2].any() and not py[:, 6:].any()
    np.testing.assert_array_equal(pc[:, 1:3], cbcr[:, :, 1:3])
    assert not pc[:, 0].any() and not pc[:, 3].any()


def test_center_crop_of_a_file_shows_the_centre(make_jpeg):
    path = make_jpeg("big.jpg", 64, 64, seed=5, quality=90, subsampling=2)
    coefs = read_jpeg(path)
    cy, cc = center_crop_or_pad(coefs.y, coefs.cbcr, 4, 4)
    crop = to_pixels(coefs.__class__(cy, cc, coefs.qt, 32, 32, "4:2:0", False))
    ref = np.asarray(Image.open(path).convert("RGB"))[16:48, 16:48]
    # Identical blocks; only chroma upsampling at the new borders differs (it replicates instead of
    # reading the neighbours that were cropped away).
    assert psnr(crop, ref) >= 35
    assert psnr(crop[2:-2, 2:-2], ref[2:-2, 2:-2]) >= 50


def test_torch_batched_crop_keeps_device_and_dtype():
    y, cbcr = _labelled(6, 6, lead=(2,))
    ty, tc = torch.from_numpy(y).float(), torch.from_numpy(cbcr).float()
    cy, cc = center_crop_or_pad(ty, tc, 2, 10)
    assert cy.shape == (2, 64, 2, 10) and cc.shape == (2, 128, 1, 5) and cy.dtype == torch.float32
    np.testing.assert_array_equal(cy[:, :, :, 2:8].numpy(), y[:, :, 2:4, :])
    assert not cy[..., :2].any() and not cy[..., 8:].any()
    gy, gc = center_crop_or_pad(ty, None, 4, 4)
    assert gc is None and gy.shape == (2, 64, 4, 4)
    # Gradients flow through crop, pad and flip.
    leaf = ty.clone().requires_grad_(True)
    out, _ = hflip(*center_crop_or_pad(leaf, None, 4, 8))
    out.sum().backward()
    assert leaf.grad[..., :4, :].abs().min() == 1 and not leaf.grad[..., 4:, :].any()


@pytest.mark.parametrize("out", [(3, 4), (4, 5), (0, 4), (-2, 4)])
def test_odd_or_empty_outputs_raise(out):
    y, cbcr = _labelled(4, 4)
    with pytest.raises(BlockGridError, match="even"):
        center_crop_or_pad(y, cbcr, *out)
    with pytest.raises(DctqError):
        random_block_crop(y, cbcr, *out, np.random.default_rng(0))


def test_mismatched_inputs_raise():
    y, cbcr = _labelled(4, 4)
    with pytest.raises(BlockGridError, match="does not match"):
        hflip(y, cbcr[:, :1])
    with pytest.raises(BlockGridError, match="pad_to_mcu"):
        center_crop_or_pad(y[:, :3], None, 2, 2)
    with pytest.raises(ValueError):  # BlockGridError is a ValueError too
        hflip(y[:32], None)


def test_random_crop_is_mcu_aligned_and_covers_offsets():
    y, cbcr = _labelled(8, 12)
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(40):
        cy, cc = random_block_crop(y, cbcr, 4, 6, rng)
        top, left = int(cy[0, 0, 0]) // 1000, int(cy[0, 0, 0]) % 1000
        assert top % 2 == 0 and left % 2 == 0 and top <= 4 and left <= 6
        np.testing.assert_array_equal(cy, y[:, top : top + 4, left : left + 6])
        np.testing.assert_array_equal(cc, cbcr[:, top // 2 : top // 2 + 2, left // 2 : left // 2 + 3])
        seen.add((top, left))
    assert len(seen) == 12  # every MCU offset: 3 rows x 4 cols
    a = random_block_crop(y, cbcr, 4, 6, np.random.default_rng(7))[0]
    b = random_block_crop(y, cbcr, 4, 6, np.random.default_rng(7))[0]
    np.testing.assert_array_equal(a, b)
    # Smaller than the output: centre-padded, not an error.
    py, _ = random_block_crop(y, cbcr, 12, 12, rng)
    np.testing.assert_array_equal(py[:, 2:10], y)


def test_pad_to_mcu_and_fit():
    y = np.ones((64, 5, 7), np.int16)
    cbcr = np.ones((128, 3, 4), np.int16)
    py, pc = pad_to_mcu(y, cbcr)
    assert py.shape == (64, 6, 8) and pc.shape == (128, 3, 4)
    assert py[:, :5, :7].all() and not py[:, 5].any() and not py[:, :, 7].any()
    ty, tc = pad_to_mcu(torch.ones(1, 64, 2, 3), None)
    assert ty.shape == (1, 64, 2, 4) and tc is None
    assert fit_block_grid(np.ones((64, 4, 4)), 2, 6).shape == (64, 2, 6)


def test_block_grid_of_pixel_sizes_is_whole_mcus():
    assert block_grid((32, 32)) == (4, 4)
    assert block_grid((33, 31)) == (6, 4) and block_grid((224, 300)) == (28, 38)
