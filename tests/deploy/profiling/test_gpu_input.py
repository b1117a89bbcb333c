"""The GPU input path and the CUDA profiler, on the CPU: batching, the fallback without pinned memory
and streams, exact coefficients, bytes per image (DCT vs RGB at 224 and 32 px), and both profilers'
numbers on tiny models. The same code on CUDA is tests/test_gpu.py."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from dctq.common.errors import BackendUnavailable, DataError
from dctq.deploy.predict import read_dct_input, read_rgb_input
from dctq.deploy.profiling.cuda import ProfileConfig, profile_cuda, profile_end_to_end
from dctq.deploy.profiling.gpu_input import DctInput, RgbInput, dct_h2d_bytes, rgb_h2d_bytes
from dctq.jpeg.dataset import JpegFolder
from dctq.jpeg.geometry import center_crop_or_pad
from dctq.jpeg.reader import read_jpeg
from dctq.jpeg.rgb import CIFAR10_MEAN, CIFAR10_STD, RgbJpegFolder
from dctq.models import create_model

CPU = ProfileConfig(
    batch_sizes=(1, 4), warmup=1, iters=3, precision="fp32", device="cpu", channels_last=False
)


def _jpeg(h: int, w: int, seed: int, mode: str = "RGB") -> bytes:
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, (max(2, h // 8), max(2, w // 8), 3)).astype(np.uint8)
    img = Image.fromarray(small).resize((w, h), Image.BICUBIC)
    if mode != "RGB":
        img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


@pytest.fixture(scope="module")
def jpegs() -> list[bytes]:
    """10 JPEGs of mixed sizes (smaller and larger than 32 px, one grayscale)."""
    sizes = [
        (32, 32),
        (40, 48),
        (24, 30),
        (64, 64),
        (32, 32),
        (17, 33),
        (48, 40),
        (32, 64),
        (16, 16),
        (33, 31),
    ]
    out = [_jpeg(h, w, seed) for seed, (h, w) in enumerate(sizes)]
    out[4] = _jpeg(32, 32, 99, mode="L")
    return out


def test_bytes_per_image() -> None:
    # int16 luma + int16 chroma at 4:2:0 is 3 bytes per pixel, like uint8 RGB; qt adds 768 bytes
    assert dct_h2d_bytes(224, 224) == 2 * 64 * 28 * 28 + 2 * 128 * 14 * 14 + 768 == 151_296
    assert rgb_h2d_bytes(224, 224) == 150_528
    assert dct_h2d_bytes(32, 32) == 3_840 and rgb_h2d_bytes(32, 32) == 3_072
    assert dct_h2d_bytes(33, 33) == dct_h2d_bytes(48, 48)  # whole MCUs


def test_dct_batches_hold_the_exact_coefficients(jpegs: list[bytes]) -> None:
    path = DctInput(4, (32, 32), device="cpu", dtype=torch.float16, workers=2)
    batches = list(path.batches(jpegs))  # all kept: later packing must not overwrite earlier batches
    assert [b.count for b in batches] == [4, 4, 2]
    y = torch.cat([b.ready()[0] for b in batches])
    cbcr = torch.cat([b.ready()[1] for b in batches])
    qt = torch.cat([b.ready()[2] for b in batches])
    assert y.dtype == torch.float16 and y.shape == (10, 64, 4, 4) and qt.dtype == torch.float32
    for i, data in enumerate(jpegs):
        coefs = read_jpeg(data)
        want_y, want_c = center_crop_or_pad(coefs.y, coefs.cbcr, 4, 4)
        np.testing.assert_array_equal(y[i].numpy().astype(np.int32), want_y)
        if want_c is None:
            assert not cbcr[i].any()  # grayscale: zero chroma = neutral colour
        else:
            np.testing.assert_array_equal(cbcr[i].numpy().astype(np.int32), want_c)
        np.testing.assert_array_equal(qt[i].numpy(), coefs.qt)
    stats = path.stats()
    assert stats.images == 10 and stats.bytes_per_image == dct_h2d_bytes(32, 32)
    assert stats.h2d_seconds == 0.0 and not batches[0].inputs[0].is_pinned()


def test_rgb_batches_are_normalised_pixels(jpegs: list[bytes]) -> None:
    path = RgbInput(3, (32, 32), device="cpu", dtype=torch.float32, workers=2)
    batches = list(path.batches(jpegs))
    assert [b.count for b in batches] == [3, 3, 3, 1]
    x = torch.cat([b.ready()[0] for b in batches])
    assert x.shape == (10, 3, 32, 32)
    pixels = np.asarray(Image.open(io.BytesIO(jpegs[3])).convert("RGB"))[16:48, 16:48]  # centre of 64x64
    mean, std = np.array(CIFAR10_MEAN).reshape(3, 1, 1), np.array(CIFAR10_STD).reshape(3, 1, 1)
    np.testing.assert_allclose(x[3].numpy(), (pixels.transpose(2, 0, 1) / 255.0 - mean) / std, atol=1e-5)
    # 24x30 image: padded with the mean colour (zero once normalised), as the dataset and predict pad it
    assert not x[2, :, 0, 0].any() and x[2, :, 4:28, 1:31].abs().sum() > 0
    assert path.stats().bytes_per_image == rgb_h2d_bytes(32, 32)


def test_bad_arguments() -> None:
    with pytest.raises(DataError, match="batch_size"):
        list(DctInput(0, (32, 32), device="cpu").batches([b"x"]))
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailable, match="cuda"):
            DctInput(2, (32, 32), device="cuda")


def test_profile_on_cpu_reports_consistent_numbers() -> None:
    model = create_model("dct_cifar_upsampling", widths=(8, 8), depths=(1, 1))
    rows = profile_cuda(model, CPU)
    assert [r.batch for r in rows] == [1, 4]
    for r in rows:
        assert 0 < r.total.min <= r.total.p50 <= r.total.p90 <= r.total.p99
        assert r.compute.p50 > 0 and r.images_per_second > 0
        assert r.h2d_bytes == r.batch * dct_h2d_bytes(32, 32)  # the wire form: int16 + fp32 tables
    assert rows[0].to_dict()["images_per_second"] == rows[0].images_per_second
    rgb = profile_cuda(
        create_model("resnet20"), ProfileConfig(batch_sizes=(2,), warmup=0, iters=2, device="cpu")
    )
    assert rgb[0].h2d_bytes == 2 * rgb_h2d_bytes(32, 32)


def test_end_to_end_predictions_match_the_model(jpegs: list[bytes]) -> None:
    torch.manual_seed(0)
    model = create_model("dct_cifar_upsampling", widths=(8, 8), depths=(1, 1)).eval()
    result = profile_end_to_end(model, jpegs, batch_size=4, config=CPU, workers=2)
    assert result.pipeline == "dct" and result.images == 10 and result.images_per_second > 0
    assert result.transfers.bytes_per_image == dct_h2d_bytes(32, 32)
    ys, cs, qs = [], [], []
    for data in jpegs:
        c = read_jpeg(data)
        y, cbcr = center_crop_or_pad(c.y, c.cbcr, 4, 4)
        ys.append(y)
        cs.append(np.zeros((128, 2, 2), np.int16) if cbcr is None else cbcr)
        qs.append(c.qt)
    with torch.no_grad():
        logits = model(*(torch.from_numpy(np.stack(a).astype(np.float32)) for a in (ys, cs, qs)))
    assert result.predictions == tuple(logits.argmax(1).tolist())
    rgb = profile_end_to_end(create_model("resnet20"), jpegs, batch_size=4, config=CPU, workers=2)
    assert rgb.pipeline == "rgb" and rgb.images == 10 and rgb.transfers.bytes_per_image == 3072


@pytest.mark.parametrize(("height", "width"), [(24, 20), (40, 48), (17, 33)])
def test_rgb_inputs_are_identical_through_the_dataset_predict_and_the_gpu_path(
    tmp_path, height, width
) -> None:
    """One RGB preprocessing (jpeg/rgb.py): an image smaller (or larger) than the input gives the same
    input through RgbJpegFolder, deploy.predict and gpu_input.RgbInput (which once padded black pixels
    before normalising, so small images differed)."""
    path = tmp_path / "cls" / "img.jpg"
    path.parent.mkdir()
    path.write_bytes(_jpeg(height, width, seed=7))
    from_dataset = RgbJpegFolder(tmp_path, input_size=32, train=False)[0].x.numpy()
    from_predict = read_rgb_input(path, 32)["x"]
    (batch,) = RgbInput(1, (32, 32), device="cpu", dtype=torch.float32, workers=1).batches([path])
    from_gpu_path = batch.ready()[0][0].numpy()
    np.testing.assert_array_equal(from_predict, from_dataset)
    np.testing.assert_array_equal(from_gpu_path, from_dataset)


@pytest.mark.parametrize(
    ("height", "width", "mode"), [(32, 32, "L"), (48, 40, "RGB"), (17, 33, "RGB"), (24, 20, "L")]
)
def test_dct_inputs_are_identical_through_the_dataset_predict_and_the_gpu_path(
    tmp_path, height, width, mode
) -> None:
    """One DCT preprocessing (jpeg.dataset.preprocess_dct): a grayscale, a 4:2:0 and an odd-size file
    (larger or smaller than the input) give the same y, cbcr and qt through JpegFolder's evaluation
    path, deploy.predict and gpu_input.DctInput (which converts y and cbcr to its dtype)."""
    path = tmp_path / "cls" / "img.jpg"
    path.parent.mkdir()
    path.write_bytes(_jpeg(height, width, seed=3, mode=mode))
    sample = JpegFolder(tmp_path, input_size=32, train=False)[0]
    from_dataset = {"y": sample.y.numpy(), "cbcr": sample.cbcr.numpy(), "qt": sample.qt.numpy()}
    from_predict = read_dct_input(path, 32)
    (batch,) = DctInput(1, (32, 32), device="cpu", dtype=torch.float32, workers=1).batches([path])
    from_gpu_path = dict(zip(("y", "cbcr", "qt"), (t[0].numpy() for t in batch.ready()), strict=True))
    assert from_dataset["y"].shape == (64, 4, 4) and from_dataset["cbcr"].shape == (128, 2, 2)
    assert (mode == "L") == (not from_dataset["cbcr"].any())
    for name, want in from_dataset.items():
        assert from_predict[name].dtype == want.dtype
        np.testing.assert_array_equal(from_predict[name], want)
        np.testing.assert_array_equal(from_gpu_path[name], want.astype(np.float32))
