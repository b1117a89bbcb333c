"""JPEG re-compression (Pillow, IJG quality) and QSAM's quality policy."""

from __future__ import annotations

import dataclasses
import io
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from dctq.common.errors import CorruptJpegError, DctqError, NotAJpegError, UnsupportedJpegError
from dctq.jpeg.quality import ijg_qt, ijg_quant_table
from dctq.jpeg.reader import read_jpeg
from dctq.jpeg.recompress import QualityPolicy, ijg_quant_tables, recompress


def _rgb(h: int = 32, w: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, size=(h // 8, w // 8, 3)).astype(np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC))


def _encode(rgb: np.ndarray, **kwargs) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", **kwargs)
    return buf.getvalue()


def _pillow_tables(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        q = img.quantization
        return np.array([q[0], q[1], q[1]]) if len(q) > 1 else np.array([q[0]] * 3)


@pytest.mark.parametrize("quality", [1, 10, 30, 50, 75, 90, 100])
def test_recompress_writes_pillows_tables_at_quality(quality: int) -> None:
    src = _encode(_rgb(), quality=95)
    out = recompress(src, quality)
    # the table Pillow itself writes when encoding a fresh image at that quality
    reference = _pillow_tables(_encode(_rgb(seed=3), quality=quality))
    np.testing.assert_array_equal(_pillow_tables(out), reference)
    np.testing.assert_array_equal(ijg_quant_tables(quality), reference)
    # and the coefficient reader sees the same tables
    np.testing.assert_array_equal(read_jpeg(out).qt, reference)


def test_recompress_keeps_size_and_uses_420_by_default() -> None:
    src = _encode(_rgb(48, 64), quality=90, subsampling=0)
    out = recompress(src, 50)
    with Image.open(io.BytesIO(out)) as img:
        assert img.size == (64, 48)
        assert [c[1:3] for c in img.layer] == [(2, 2), (1, 1), (1, 1)]
    with Image.open(io.BytesIO(recompress(src, 50, subsampling="4:4:4"))) as img:
        assert [c[1:3] for c in img.layer] == [(1, 1), (1, 1), (1, 1)]


def test_recompress_lower_quality_loses_more() -> None:
    rgb = _rgb(seed=5)
    src = _encode(rgb, quality=100)
    errors = []
    for q in (90, 50, 10):
        with Image.open(io.BytesIO(recompress(src, q))) as img:
            errors.append(np.abs(np.asarray(img, dtype=np.float64) - rgb).mean())
    assert errors[0] < errors[1] < errors[2]


def test_recompress_gray_stays_gray() -> None:
    buf = io.BytesIO()
    Image.fromarray(_rgb()).convert("L").save(buf, format="JPEG", quality=90)
    with Image.open(io.BytesIO(recompress(buf.getvalue(), 40))) as img:
        assert img.mode == "L"
        assert img.quantization[0] == list(ijg_quant_tables(40)[0])


@pytest.mark.parametrize("quality", [0, 101, -5, 50.5, True, "75"])
def test_recompress_rejects_bad_quality(quality) -> None:
    with pytest.raises(DctqError, match=r"1\.\.100"):
        recompress(_encode(_rgb(), quality=75), quality)


@pytest.mark.parametrize("quality", [0, 101, -5, 50.5, True])
def test_ijg_quant_tables_reject_what_the_table_builder_clamps(quality) -> None:
    """One table builder: recompress.ijg_quant_tables is quality.ijg_quant_table with the chroma row
    repeated, except that it raises on qualities recompress refuses where the builder clamps."""
    with pytest.raises(DctqError, match=r"1\.\.100"):
        ijg_quant_tables(quality)
    clamped = ijg_quant_table(int(min(max(quality, 1), 100)))
    assert clamped.shape == (2, 64) and clamped.dtype == np.uint16


def test_ijg_quant_tables_repeat_the_chroma_table_of_ijg_quant_table() -> None:
    for quality in (1, 10, 50, 75, 100):
        tables, table = ijg_quant_tables(quality), ijg_quant_table(quality)
        assert tables.shape == (3, 64) and tables.dtype == np.uint16
        np.testing.assert_array_equal(tables, table[[0, 1, 1]])
        np.testing.assert_array_equal(ijg_qt([quality])[0].numpy(), tables.astype(np.float32))


def test_recompress_rejects_bad_inputs() -> None:
    src = _encode(_rgb(), quality=75)
    with pytest.raises(DctqError, match="subsampling"):
        recompress(src, 50, subsampling="4:1:1")
    png = io.BytesIO()
    Image.fromarray(_rgb()).save(png, format="PNG")
    with pytest.raises(NotAJpegError):
        recompress(png.getvalue(), 50)
    with pytest.raises(CorruptJpegError):
        recompress(src[: len(src) // 2], 50)


def test_quality_policy_validates_and_freezes() -> None:
    policy = QualityPolicy([90, 60, 30, 10], 50)
    assert policy.train_qualities == (90, 60, 30, 10)
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.test_quality = 20  # type: ignore[misc]
    for bad in ({"train_qualities": ()}, {"train_qualities": (90, 0)}, {"test_quality": 101}):
        with pytest.raises(DctqError):
            QualityPolicy(**bad)
    with pytest.raises(DctqError, match="sequence"):
        QualityPolicy(train_qualities=90)  # type: ignore[arg-type]


def test_quality_policy_picks() -> None:
    rng = np.random.default_rng(0)
    policy = QualityPolicy((90, 60, 30, 10), 70)
    counts = Counter(policy.pick(True, rng) for _ in range(4000))
    assert set(counts) == {90, 60, 30, 10}
    assert all(900 < c < 1100 for c in counts.values())
    assert {policy.pick(False, rng) for _ in range(10)} == {70}
    keep = QualityPolicy()
    assert keep.pick(True, rng) is None and keep.pick(False, rng) is None


def _refused_by_the_reader(kind: str, tmp_path) -> bytes:
    """JPEG bytes the coefficient reader refuses but Pillow decodes (a clean re-encode would hide them)."""
    import jpeglib

    if kind == "cmyk":
        buf = io.BytesIO()
        Image.fromarray(_rgb()).convert("CMYK").save(buf, format="JPEG", quality=90)
        return buf.getvalue()
    if kind == "arithmetic":
        previous = jpeglib.version.get()
        try:
            jpeglib.version.set("turbo210")
            jpeglib.from_spatial(_rgb()).write_spatial(str(tmp_path / "a.jpg"), qt=80, flags=["+ARITH_CODE"])
        finally:
            jpeglib.version.set(previous)
        return (tmp_path / "a.jpg").read_bytes()
    if kind == "4:1:1":
        img = jpeglib.from_spatial(_rgb())
        img.samp_factor = "4:1:1"
        img.write_spatial(str(tmp_path / "b.jpg"), qt=80)
        return (tmp_path / "b.jpg").read_bytes()
    data = _encode(_rgb(64, 64), quality=95)  # "corrupt": junk in the middle of the scan data
    middle = (data.index(b"\xff\xda") + len(data)) // 2
    junk = (
        np.random.default_rng(3).integers(0, 256, size=24, dtype=np.uint8).tobytes().replace(b"\xff", b"\x00")
    )
    return data[:middle] + junk + data[middle + len(junk) :]


@pytest.mark.parametrize(
    ("kind", "error", "message"),
    [
        ("cmyk", UnsupportedJpegError, r"^CMYK JPEG is not supported"),
        ("arithmetic", UnsupportedJpegError, r"^arithmetic-coded sequential JPEG is not supported"),
        ("4:1:1", UnsupportedJpegError, r"^chroma sampling .* is not supported"),
        ("corrupt", CorruptJpegError, r"^the JPEG data is damaged"),
    ],
)
def test_recompression_and_augmentation_refuse_what_the_reader_refuses(
    tmp_path, kind, error, message
) -> None:
    """`--qualities` and QSAM training re-encoded CMYK, arithmetic-coded, 4:1:1 and damaged files into
    clean JPEGs the reader accepts, so training used images `predict` and evaluation refuse."""
    from dctq.jpeg.pixel_augment import PixelCropFlip
    from dctq.jpeg.reader import read_blocks

    data = _refused_by_the_reader(kind, tmp_path)
    with pytest.raises(error):
        read_blocks(data)
    Image.open(io.BytesIO(data)).load()  # Pillow alone decodes it
    with pytest.raises(error, match=message):
        recompress(data, 50)
    with pytest.raises(error, match=message):
        PixelCropFlip()(data, np.random.default_rng(0))
