"""jpeg/chroma.py: every accepted layout onto the 4:2:0 grid; 4:4:4 / 4:2:2 by the exact DCT-domain map."""

from __future__ import annotations

import math

import jpeglib
import numpy as np
import pytest
import torch
from helpers import jpeg_bytes

from dctq.common.errors import UnsupportedJpegError
from dctq.jpeg.chroma import assemble_420, downsample_422, downsample_444, round_half_away
from dctq.jpeg.dct import block_dct, block_idct
from dctq.jpeg.geometry import fit_block_grid
from dctq.jpeg.reader import available_backends, read_blocks, read_jpeg

SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}


def _raw(path):
    """jpeglib's components as assemble_420 takes them: blocks [64, rows, cols], (h, v), tables [64]."""
    im = jpeglib.read_dct(str(path))
    comps = [c for c in (im.Y, im.Cb, im.Cr) if c is not None]
    blocks = [c.transpose(2, 3, 0, 1).reshape(64, c.shape[0], c.shape[1]) for c in comps]
    # jpeglib's samp_factor rows are (v, h); the SOF header and assemble_420 use (h, v).
    sampling = [(int(s[1]), int(s[0])) for s in np.asarray(im.samp_factor)[: len(comps)]]
    tables = [im.qt[i].reshape(64) for i in im.quant_tbl_no[: len(comps)]]
    return blocks, sampling, tables, im.height, im.width


def _decoded_chroma(path, layout: str) -> list[np.ndarray]:
    """Cb, Cr at the file's own chroma resolution, decoded by libjpeg without colour conversion.

    Without fancy upsampling libjpeg replicates 4:2:2 chroma samples, so every other column is the plane.
    """
    ycc = jpeglib.read_spatial(str(path), out_color_space=jpeglib.JCS_YCbCr, flags=["-DO_FANCY_UPSAMPLING"])
    planes = ycc.spatial.astype(np.float64)
    step = 2 if layout == "4:2:2" else 1
    return [planes[:, ::step, i] for i in (1, 2)]


def _average(plane: np.ndarray, layout: str) -> np.ndarray:
    if layout == "4:4:4":
        return plane.reshape(plane.shape[0] // 2, 2, plane.shape[1] // 2, 2).mean(axis=(1, 3))
    return plane.reshape(plane.shape[0] // 2, 2, plane.shape[1]).mean(axis=1)


def _reference(path, layout, tables, height, width) -> np.ndarray:
    """Pixel-domain reference: decoded chroma, edge-replicated over its blocks (what the encoder padded
    with), mid-grey past them, averaged, block DCT, quantized with the component's table."""
    out = []
    for plane, table in zip(_decoded_chroma(path, layout), tables[1:], strict=True):
        h, w = plane.shape
        rows, cols = math.ceil(h / 8), math.ceil(w / 8)
        plane = np.pad(plane, ((0, 8 * rows - h), (0, 8 * cols - w)), mode="edge")
        even_cols = 2 * math.ceil(cols / 2) if layout == "4:4:4" else cols
        plane = np.pad(
            plane,
            ((0, 16 * math.ceil(rows / 2) - 8 * rows), (0, 8 * even_cols - 8 * cols)),
            constant_values=128,
        )
        coefs = round_half_away(block_dct(_average(plane, layout) - 128) / table.reshape(64, 1, 1))
        out.append(fit_block_grid(coefs, math.ceil(height / 16), math.ceil(width / 16)))
    return np.concatenate(out)


def _write(make_jpeg, layout, height, width, quality, seed=3):
    return make_jpeg(
        f"{layout.replace(':', '')}_{height}x{width}_q{quality}.jpg",
        height,
        width,
        seed=seed,
        quality=quality,
        subsampling=SUBSAMPLING[layout],
    )


def test_pair_map_is_idct_average_dct():
    rng = np.random.default_rng(0)
    x = rng.normal(scale=50, size=(2, 64, 4, 6))
    pixels = block_idct(x)  # [2, 32, 48]
    avg_444 = pixels.reshape(2, 16, 2, 24, 2).mean(axis=(2, 4))
    np.testing.assert_allclose(downsample_444(x), block_dct(avg_444), atol=1e-9)
    avg_422 = pixels.reshape(2, 16, 2, 48).mean(axis=2)
    np.testing.assert_allclose(downsample_422(x), block_dct(avg_422), atol=1e-9)
    # Odd grids are zero-padded (zero blocks = level-shifted 0) before averaging.
    odd = x[0, :, :3, :5]
    padded = np.zeros((64, 4, 6))
    padded[:, :3, :5] = odd
    np.testing.assert_allclose(downsample_444(odd), downsample_444(padded), atol=1e-12)
    assert downsample_444(odd).shape == (64, 2, 3) and downsample_422(odd).shape == (64, 2, 5)


def test_round_half_away_from_zero():
    np.testing.assert_array_equal(
        round_half_away(np.array([-2.5, -1.5, -0.5, 0.49, 0.5, 1.5, 2.5])), [-3, -2, -1, 0, 1, 2, 3]
    )
    # the same function rounds tensors (zero-shot synthesis quantizes with it)
    t = round_half_away(torch.tensor([-2.5, -1.5, -0.5, 0.49, 0.5, 1.5, 2.5], dtype=torch.float64))
    assert t.dtype == torch.float64 and t.tolist() == [-3, -2, -1, 0, 1, 2, 3]


@pytest.mark.parametrize("height,width", [(32, 32), (33, 47), (17, 9)])
def test_420_is_taken_as_stored(make_jpeg, height, width):
    path = _write(make_jpeg, "4:2:0", height, width, 75)
    blocks, sampling, tables, h, w = _raw(path)
    assert sampling == [(2, 2), (1, 1), (1, 1)]
    y, cbcr = assemble_420(blocks, sampling, tables, h, w)
    hb, wb = 2 * math.ceil(height / 16), 2 * math.ceil(width / 16)
    assert y.shape == (64, hb, wb) and cbcr.shape == (128, hb // 2, wb // 2)
    assert y.dtype == np.int16 and cbcr.dtype == np.int16
    r, c = blocks[0].shape[1:]
    np.testing.assert_array_equal(y[:, :r, :c], blocks[0])
    assert not y[:, r:].any() and not y[:, :, c:].any()
    np.testing.assert_array_equal(cbcr[:64], fit_block_grid(blocks[1], hb // 2, wb // 2))
    np.testing.assert_array_equal(cbcr[64:], fit_block_grid(blocks[2], hb // 2, wb // 2))


@pytest.mark.parametrize("layout", ["4:4:4", "4:2:2"])
@pytest.mark.parametrize("height,width,quality", [(32, 32, 75), (33, 47, 90), (17, 9, 50), (48, 64, 95)])
def test_mapped_chroma_matches_pixel_domain_subsampling(make_jpeg, layout, height, width, quality):
    path = _write(make_jpeg, layout, height, width, quality)
    blocks, sampling, tables, h, w = _raw(path)
    assert sampling[0] == {"4:4:4": (1, 1), "4:2:2": (2, 1)}[layout]
    y, cbcr = assemble_420(blocks, sampling, tables, h, w)
    hb, wb = 2 * math.ceil(height / 16), 2 * math.ceil(width / 16)
    assert y.shape == (64, hb, wb) and cbcr.shape == (128, hb // 2, wb // 2) and cbcr.dtype == np.int16
    np.testing.assert_array_equal(y[:, : blocks[0].shape[1], : blocks[0].shape[2]], blocks[0])

    ref = _reference(path, layout, tables, h, w)
    diff = np.abs(cbcr.astype(np.int64) - ref)
    # The decoded reference carries libjpeg's 8-bit rounding (and an approximate edge padding), so a
    # coefficient near a rounding boundary can land one step away; never two steps in more than 1%.
    assert (diff <= 1).mean() >= 0.99, f"{(diff <= 1).mean():.4f} within +-1"
    assert (diff == 0).mean() >= 0.9


@pytest.mark.parametrize("layout", ["4:4:4", "4:2:2"])
def test_map_before_rounding_is_within_decoder_rounding(make_jpeg, layout):
    """Dequantized tolerance: on whole 16x16 regions, the unrounded map differs from averaging the decoded
    pixels by less than 1.5 DCT units (rms < 0.35): the decoder's own 8-bit rounding, nothing more."""
    path = _write(make_jpeg, layout, 33, 47, 75)
    blocks, _, tables, _, _ = _raw(path)
    for plane, comp, table in zip(_decoded_chroma(path, layout), blocks[1:], tables[1:], strict=True):
        rows = (plane.shape[0] // 16) * 16
        cols = (plane.shape[1] // 16) * 16 if layout == "4:4:4" else (plane.shape[1] // 8) * 8
        ref = block_dct(_average(plane[:rows, :cols], layout) - 128)
        deq = comp.astype(np.float64) * table.reshape(64, 1, 1)
        mapped = (downsample_444 if layout == "4:4:4" else downsample_422)(deq)[
            :, : ref.shape[1], : ref.shape[2]
        ]
        err = np.abs(mapped - ref)
        assert err.max() < 1.5 and math.sqrt((err**2).mean()) < 0.35


def test_grayscale_has_no_chroma(make_jpeg):
    path = make_jpeg("g.jpg", 17, 40, mode="L")
    blocks, sampling, tables, h, w = _raw(path)
    y, cbcr = assemble_420(blocks, sampling, tables, h, w)
    assert cbcr is None and y.shape == (64, 4, 6) and y.dtype == np.int16
    np.testing.assert_array_equal(y[:, :3, :5], blocks[0])


@pytest.mark.parametrize(
    "sampling,name",
    [
        ([(2, 2), (2, 2), (2, 2)], "2x2 2x2 2x2"),
        ([(1, 2), (1, 1), (1, 1)], "1x2 1x1 1x1"),
        ([(4, 1), (1, 1), (1, 1)], "4x1 1x1 1x1"),
        ([(1, 1), (2, 2), (2, 2)], "1x1 2x2 2x2"),
        ([(2, 2), (1, 1), (2, 1)], "2x2 1x1 2x1"),
    ],
)
def test_unsupported_layouts_are_named(sampling, name):
    comps = [np.zeros((64, 2, 2), np.int16)] * 3
    with pytest.raises(UnsupportedJpegError) as info:
        assemble_420(comps, sampling, [np.ones(64)] * 3, 16, 16)
    assert name in str(info.value) and "4:2:0" in str(info.value) and "4:4:4" in str(info.value)


@pytest.mark.parametrize("count", [2, 4])
def test_unsupported_component_counts(count):
    with pytest.raises(UnsupportedJpegError, match=f"{count} block arrays"):
        assemble_420(
            [np.zeros((64, 2, 2), np.int16)] * count, [(1, 1)] * count, [np.ones(64)] * count, 16, 16
        )


def test_oversized_arrays_are_cropped_to_the_grid():
    rng = np.random.default_rng(1)
    big = [rng.integers(-50, 50, size=(64, 6, 6)).astype(np.int16) for _ in range(3)]
    y, cbcr = assemble_420(big, [(2, 2), (1, 1), (1, 1)], [np.ones(64)] * 3, 20, 30)
    assert y.shape == (64, 4, 4) and cbcr.shape == (128, 2, 2)
    np.testing.assert_array_equal(y, big[0][:, :4, :4])


def _numpy_path(data: bytes):
    """The reference: the blocks as stored (read_blocks), mapped by this module's numpy code."""
    blocks = read_blocks(data)
    hy, vy = blocks.sampling[0]
    hc, vc = blocks.sampling[1]
    normalised = [(hy // hc, vy // vc), (1, 1), (1, 1)]
    return assemble_420(list(blocks.components), normalised, list(blocks.qt), blocks.height, blocks.width)


def _photo(height: int, width: int, seed: int) -> np.ndarray:
    """A real photograph (scikit-image's) resized, or noise for the dense blocks of the separable path."""
    import PIL.Image
    import skimage.data

    if seed < 0:
        return np.random.default_rng(-seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    rgb = [skimage.data.chelsea, skimage.data.coffee, skimage.data.astronaut][seed % 3]()
    return np.asarray(PIL.Image.fromarray(rgb).resize((width, height), PIL.Image.LANCZOS))


@pytest.mark.skipif("turbo" not in available_backends(), reason="the C extension is not built")
@pytest.mark.parametrize("layout", ["4:4:4", "4:2:2"])
@pytest.mark.parametrize(
    "height,width,quality,progressive,seed",
    [
        (17, 9, 75, False, 0),
        (33, 47, 90, True, 1),
        (224, 224, 90, False, 2),  # 14 output blocks across: the SIMD plane copy and its scalar tail
        (375, 500, 75, True, 0),
        (250, 130, 95, False, 1),
        (64, 136, 100, False, -1),  # noise at q100: blocks denser than the sparse path takes
    ],
)
def test_c_map_equals_the_numpy_map(layout, height, width, quality, progressive, seed):
    """The extension maps 4:4:4 / 4:2:2 chroma while it copies the blocks out (read_jpeg's turbo path):
    bit for bit what assemble_420 gives from the blocks as stored, ties included (map_round)."""

    data = jpeg_bytes(_photo(height, width, seed), quality, SUBSAMPLING[layout], progressive)
    fast = read_jpeg(data, backend="turbo")
    y, cbcr = _numpy_path(data)
    assert fast.subsampling == layout
    np.testing.assert_array_equal(fast.y, y)
    np.testing.assert_array_equal(fast.cbcr, cbcr)
    assert fast.cbcr.dtype == np.int16 and fast.cbcr.flags.writeable
    if seed < 0:
        dense = max((c.reshape(64, -1) != 0).sum(0).max() for c in read_blocks(data).components[1:])
        assert dense > 16  # the separable branch ran


def test_map_round_takes_ties_away_from_zero_whatever_the_summation_order():
    from dctq.jpeg.chroma import map_round

    ties = np.array([0.5, -0.5, 2.5, -2.5, 0.5 - 1e-13, -0.5 + 1e-13, 1.5 + 1e-13, 0.49, -0.51, 0.0])
    np.testing.assert_array_equal(map_round(ties), [1, -1, 3, -3, 1, -1, 2, 0, -1, 0])
