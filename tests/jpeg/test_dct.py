"""jpeg/dct.py: the JPEG 8x8 DCT in numpy and torch, and the differentiable RGB -> coefficients path."""

from __future__ import annotations

import math

import jpeglib
import numpy as np
import pytest
import torch
from PIL import Image

from dctq.common.errors import DctqError
from dctq.jpeg.chroma import round_half_away
from dctq.jpeg.dct import (
    BlockGridError,
    block_dct,
    block_idct,
    dct_basis,
    dct_matrix,
    rgb_to_coefficients,
    rgb_to_ycbcr,
    ycbcr_to_rgb,
)


def _raw_blocks(path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """jpeglib's quantized blocks as [64, rows, cols] (k = 8u + v) and per-component [64, 1, 1] tables."""
    im = jpeglib.read_dct(str(path))
    comps = [c for c in (im.Y, im.Cb, im.Cr) if c is not None]
    blocks = [c.transpose(2, 3, 0, 1).reshape(64, c.shape[0], c.shape[1]) for c in comps]
    tables = [im.qt[i].reshape(64, 1, 1).astype(np.float64) for i in im.quant_tbl_no[: len(comps)]]
    return blocks, tables


def test_matrix_is_orthonormal_and_matches_libjpeg_formula():
    d = dct_matrix()
    np.testing.assert_allclose(d @ d.T, np.eye(8), atol=1e-12)
    rng = np.random.default_rng(0)
    f = rng.uniform(-128, 127, size=(8, 8))
    c = lambda u: 1 / math.sqrt(2) if u == 0 else 1.0  # noqa: E731
    x = np.arange(8)
    for u, v in [(0, 0), (0, 3), (5, 0), (7, 6)]:
        cos_u = np.cos((2 * x + 1) * u * math.pi / 16)[:, None]
        cos_v = np.cos((2 * x + 1) * v * math.pi / 16)[None, :]
        expected = 0.25 * c(u) * c(v) * np.sum(f * cos_u * cos_v)
        assert block_dct(f)[8 * u + v, 0, 0] == pytest.approx(expected, abs=1e-9)
    basis = dct_basis()
    assert basis.shape == (64, 8, 8)
    np.testing.assert_allclose(np.einsum("kxy,xy->k", basis, f), block_dct(f)[:, 0, 0], atol=1e-9)


def test_numpy_roundtrip_and_layout():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, 16, 24))
    c = block_dct(x)
    assert c.shape == (2, 3, 64, 2, 3) and c.dtype == np.float64
    np.testing.assert_allclose(block_idct(c), x, atol=1e-10)
    # Block (1, 2) of the plane lands at grid position (1, 2); DC is 8x the block mean.
    assert c[0, 0, 0, 1, 2] == pytest.approx(8 * x[0, 0, 8:16, 16:24].mean())
    # Integer input is promoted, not truncated.
    assert block_dct(np.full((8, 8), 3, dtype=np.uint8))[0, 0, 0] == pytest.approx(24.0)


def test_coefficients_of_decoded_luma_match_the_file(make_jpeg):
    path = make_jpeg("g.jpg", 32, 48, seed=2, quality=90, mode="L")
    (blocks,), (table,) = _raw_blocks(path)
    luma = np.asarray(Image.open(path), dtype=np.float64)
    ours = round_half_away(block_dct(luma - 128) / table)
    diff = np.abs(ours - blocks)
    # Decoded pixels carry 8-bit rounding; re-quantizing them lands on the stored integers up to +-1.
    assert diff.max() <= 1 and (diff == 0).mean() > 0.95


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_matches_numpy_keeps_dtype_and_is_differentiable(dtype):
    rng = np.random.default_rng(3)
    x_np = rng.uniform(0, 255, size=(2, 3, 16, 32))
    x = torch.tensor(x_np, dtype=dtype, requires_grad=True)
    c = block_dct(x)
    assert c.shape == (2, 3, 64, 2, 4) and c.dtype == dtype and c.device == x.device
    tol = 1e-3 if dtype == torch.float32 else 1e-9
    np.testing.assert_allclose(c.detach().numpy(), block_dct(x_np), atol=tol)
    # [N, C, H, W] -> [N, 64*C, Hb, Wb] for synthesis code is a flatten away.
    assert c.flatten(1, 2).shape == (2, 192, 2, 4)
    back = block_idct(c)
    np.testing.assert_allclose(back.detach().numpy(), x_np, atol=tol * 10)
    # Orthonormal: the gradient of sum(c^2) w.r.t. x is 2x (Parseval).
    (c**2).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * x_np, rtol=tol, atol=tol)


def test_torch_integer_input_is_promoted():
    c = block_dct(torch.full((8, 8), 2, dtype=torch.int16))
    assert c.dtype == torch.float32 and float(c[0, 0, 0]) == pytest.approx(16.0)


def test_bad_shapes_raise():
    with pytest.raises(BlockGridError, match="multiples of 8"):
        block_dct(np.zeros((12, 16)))
    with pytest.raises(BlockGridError, match="64"):
        block_idct(np.zeros((32, 2, 2)))
    with pytest.raises(BlockGridError, match="multiples of 16"):
        rgb_to_coefficients(np.zeros((3, 8, 16)))
    assert issubclass(BlockGridError, DctqError) and issubclass(BlockGridError, ValueError)


def test_colour_conversion_roundtrip():
    rng = np.random.default_rng(4)
    rgb = rng.uniform(0, 255, size=(3, 4, 5))
    np.testing.assert_allclose(ycbcr_to_rgb(rgb_to_ycbcr(rgb)), rgb, atol=1e-6)
    grey = np.full((3, 2, 2), 77.0)
    np.testing.assert_allclose(
        rgb_to_ycbcr(grey), np.stack([np.full((2, 2), v) for v in (77.0, 128.0, 128.0)])
    )


def test_rgb_to_coefficients_matches_an_encoder(tmp_path):
    yy, xx = np.mgrid[0:32, 0:48]
    rgb = np.stack(
        [128 + 90 * np.sin(xx / 6.0), 128 + 80 * np.cos(yy / 5.0), 128 + 60 * np.sin((xx + yy) / 9.0)], -1
    ).astype(np.uint8)
    path = tmp_path / "c.jpg"
    Image.fromarray(rgb).save(path, quality=90, subsampling=2)
    # libjpeg's encoder differs from the float path only by its integer DCT and colour-conversion rounding.
    blocks, tables = _raw_blocks(path)
    y, cbcr = rgb_to_coefficients(rgb.transpose(2, 0, 1).astype(np.float64))
    assert y.shape == (64, 4, 6) and cbcr.shape == (128, 2, 3)
    yq = round_half_away(y / tables[0])
    cq = round_half_away(cbcr / np.concatenate(tables[1:]))
    stored_c = np.concatenate(blocks[1:])
    assert (np.abs(yq - blocks[0]) <= 1).mean() > 0.99
    assert (np.abs(cq - stored_c) <= 1).mean() > 0.99
    # torch, batched, gives the same numbers and gradients flow back to pixels.
    x = torch.tensor(rgb.transpose(2, 0, 1)[None], dtype=torch.float64, requires_grad=True)
    yt, ct = rgb_to_coefficients(x)
    assert yt.shape == (1, 64, 4, 6) and ct.shape == (1, 128, 2, 3)
    np.testing.assert_allclose(yt[0].detach().numpy(), y, atol=1e-9)
    np.testing.assert_allclose(ct[0].detach().numpy(), cbcr, atol=1e-9)
    (yt.sum() + ct.sum()).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_tensors_stay_on_device():
    x = torch.rand(2, 3, 32, 32, device="cuda") * 255
    y, cbcr = rgb_to_coefficients(x)
    assert y.device == x.device and cbcr.device == x.device and y.dtype == torch.float32
    y_cpu, cbcr_cpu = rgb_to_coefficients(x.cpu().double())
    np.testing.assert_allclose(y.cpu().numpy(), y_cpu.numpy(), atol=1e-2)
    np.testing.assert_allclose(cbcr.cpu().numpy(), cbcr_cpu.numpy(), atol=1e-2)
    np.testing.assert_allclose(block_idct(block_dct(x)).cpu().numpy(), x.cpu().numpy(), atol=1e-2)
