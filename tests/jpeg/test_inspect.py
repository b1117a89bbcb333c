"""IJG quality estimation and the inspect report, on tiny JPEGs written by Pillow."""

from __future__ import annotations

import io

import jpeglib
import numpy as np
import pytest
from PIL import Image

from dctq.common.errors import JpegError
from dctq.jpeg.inspect import inspect_jpeg
from dctq.jpeg.quality import (
    MAX_IJG_FIT_ERROR,
    STD_CHROMA_TABLE,
    STD_LUMA_TABLE,
    estimate_ijg_quality,
    jpeg_quality_scaling,
    scaled_table,
)
from dctq.jpeg.reader import read_jpeg


def _pillow_jpeg(quality: int | str, mode: str = "RGB", size: int = 16) -> bytes:
    rng = np.random.default_rng(quality if isinstance(quality, int) else 0)
    img = Image.fromarray(rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8))
    if mode != "RGB":
        img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def test_quality_scaling_matches_libjpeg():
    assert [jpeg_quality_scaling(q) for q in (1, 10, 25, 49, 50, 75, 95, 100)] == [
        5000,
        500,
        200,
        102,
        100,
        50,
        10,
        0,
    ]
    # libjpeg clamps out-of-range qualities instead of failing.
    assert jpeg_quality_scaling(0) == 5000
    assert jpeg_quality_scaling(150) == 0


def test_scaled_table_rounding_and_clamps():
    np.testing.assert_array_equal(scaled_table(STD_LUMA_TABLE, 50), STD_LUMA_TABLE)
    assert scaled_table(STD_LUMA_TABLE, 100).tolist() == [1] * 64
    # q=75 halves the table with rounding half up: 11 -> 6 (5.5), 99 -> 50 (49.5).
    half = scaled_table(STD_CHROMA_TABLE, 75)
    assert half[0] == 9 and half[1] == 9 and half[-1] == 50
    # Quality 5 scales by 10x: baseline tables clamp to 255, extended ones do not.
    assert scaled_table(STD_LUMA_TABLE, 5).max() == 255
    assert scaled_table(STD_LUMA_TABLE, 5, force_baseline=False).max() == 1210


@pytest.mark.parametrize("quality", [10, 20, 25, 30, 45, 50, 55, 70, 75, 85, 90, 95, 97, 99, 100])
def test_estimate_quality_of_pillow_files(quality):
    coef = read_jpeg(_pillow_jpeg(quality))
    est, err = estimate_ijg_quality(coef.qt[0], coef.qt[1])
    assert (est, err) == (quality, 0.0)


def test_estimate_quality_grayscale_uses_luma_only():
    coef = read_jpeg(_pillow_jpeg(60, mode="L"))
    assert estimate_ijg_quality(coef.qt[0], None) == (60, 0.0)


def test_estimate_quality_every_ijg_quality_exactly():
    for q in range(1, 101):
        assert estimate_ijg_quality(scaled_table(STD_LUMA_TABLE, q), scaled_table(STD_CHROMA_TABLE, q)) == (
            q,
            0.0,
        )


def test_estimate_quality_near_ijg_table_is_approximate():
    luma = scaled_table(STD_LUMA_TABLE, 80)
    luma[5] += 3  # one entry edited by hand
    est, err = estimate_ijg_quality(luma, scaled_table(STD_CHROMA_TABLE, 80))
    assert est == 80
    assert 0.0 < err < MAX_IJG_FIT_ERROR


def test_estimate_quality_rejects_non_ijg_tables():
    # Pillow's "web_high" preset carries Photoshop-style tables.
    coef = read_jpeg(_pillow_jpeg("web_high"))
    est, err = estimate_ijg_quality(coef.qt[0], coef.qt[1])
    assert est is None and err > MAX_IJG_FIT_ERROR
    assert estimate_ijg_quality(np.full(64, 16), None)[0] is None


def test_estimate_quality_rejects_wrong_table_size():
    with pytest.raises(ValueError, match="64"):
        estimate_ijg_quality(np.ones(63), None)


def test_inspect_report_fields(make_jpeg):
    path = make_jpeg("a.jpg", height=40, width=56, quality=80, subsampling=2)
    report = inspect_jpeg(path)
    assert report.path == str(path)
    assert report.file_size == path.stat().st_size
    assert (report.width, report.height) == (56, 40)
    assert report.subsampling == "4:2:0"
    assert report.progressive is False
    assert report.block_grid == (6, 8)  # 48x64 pixels of 16-px MCUs
    assert (report.quality, report.quality_fit_error) == (80, 0.0)
    assert report.qtables[0] == scaled_table(STD_LUMA_TABLE, 80).reshape(8, 8).tolist()
    assert report.qtables[1] == report.qtables[2] == scaled_table(STD_CHROMA_TABLE, 80).reshape(8, 8).tolist()


def test_inspect_nonzero_shares_match_jpeglib(make_jpeg):
    path = make_jpeg("a.jpg", height=40, width=56, quality=90, subsampling=2)
    report = inspect_jpeg(path)
    # Independent count with jpeglib over the blocks covering the image: 5x7 luma, 3x4 chroma.
    ref = jpeglib.read_dct(str(path))
    for name, arr, (rows, cols) in (("y", ref.Y, (5, 7)), ("cb", ref.Cb, (3, 4)), ("cr", ref.Cr, (3, 4))):
        blocks = arr[:rows, :cols].reshape(rows * cols, 64)
        expected = (blocks != 0).mean(axis=0)
        np.testing.assert_allclose(report.nonzero_share[name], expected)
        assert report.nonzero_overall[name] == pytest.approx(expected.mean())
    # A smooth image at q90: DC is non-zero in (nearly) every block, the highest frequency rarely.
    assert report.nonzero_share["y"][0] > 0.9
    assert report.nonzero_share["y"][63] < report.nonzero_share["y"][1]


def test_inspect_grayscale_and_progressive(make_jpeg):
    gray = inspect_jpeg(make_jpeg("g.jpg", mode="L", quality=60))
    assert gray.subsampling == "gray"
    assert gray.nonzero_share["cb"] is None and gray.nonzero_overall["cr"] is None
    assert gray.quality == 60
    prog = inspect_jpeg(make_jpeg("p.jpg", progressive=True, subsampling=0))
    assert prog.progressive is True
    assert prog.subsampling == "4:4:4"
    assert prog.block_grid == (4, 4)


def test_inspect_missing_and_not_jpeg(tmp_path):
    missing = tmp_path / "nope.jpg"
    with pytest.raises(JpegError, match=r"nope\.jpg"):
        inspect_jpeg(missing)
    with pytest.raises(JpegError, match="is a folder"):
        inspect_jpeg(tmp_path)
    png = tmp_path / "fake.jpg"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(png, format="PNG")
    with pytest.raises(JpegError):
        inspect_jpeg(png)
