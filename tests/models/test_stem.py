"""The DCT input stem: dequantization with the file's tables, per-frequency normalization, statistics."""

from __future__ import annotations

import io

import jpeglib
import numpy as np
import pytest
import torch
from PIL import Image

from dctq.common.errors import ModelError
from dctq.models import DctStem, StemStats, compute_stem_stats, create_model, example_inputs
from dctq.models.stem import dequantize


def _random_batch(n: int, hb: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(-50, 50, (n, 64, hb, hb), generator=g).float()
    cbcr = torch.randint(-20, 20, (n, 128, hb // 2, hb // 2), generator=g).float()
    qt = torch.randint(1, 100, (n, 3, 64), generator=g).float()
    return y, cbcr, qt


def _read_jpeg(path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(y [1,64,Hb,Wb], cbcr [1,128,Hb/2,Wb/2], qt [1,3,64]) of a 4:2:0 JPEG via jpeglib, k = 8u + v."""
    im = jpeglib.read_dct(str(path))

    def planes(c: np.ndarray) -> torch.Tensor:  # [Hb, Wb, 8, 8] -> [64, Hb, Wb]
        return torch.from_numpy(c.reshape(c.shape[0], c.shape[1], 64).transpose(2, 0, 1).astype(np.float32))

    tables = im.qt.reshape(-1, 64).astype(np.float32)
    qt = torch.from_numpy(np.stack([tables[im.quant_tbl_no[i]] for i in range(3)]))
    return planes(im.Y)[None], torch.cat([planes(im.Cb), planes(im.Cr)])[None], qt[None]


def _smooth_jpeg(path, seed: int, quality: int) -> None:
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, size=(6, 6, 3)).astype(np.uint8)
    img = Image.fromarray(small).resize((48, 48), Image.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality, subsampling=2)
    path.write_bytes(buf.getvalue())


def test_dequantize_uses_each_components_table():
    y, cbcr, qt = _random_batch(2, 4, seed=0)
    y_deq, c_deq = dequantize(y, cbcr, qt)
    n, k, i, j = 1, 8 * 2 + 3, 1, 2  # u=2, v=3
    assert y_deq[n, k, i, j] == y[n, k, i, j] * qt[n, 0, k]
    assert c_deq[n, k, 0, 1] == cbcr[n, k, 0, 1] * qt[n, 1, k]  # Cb
    assert c_deq[n, 64 + k, 1, 0] == cbcr[n, 64 + k, 1, 0] * qt[n, 2, k]  # Cr
    int_y = y.to(torch.int16)
    assert torch.equal(dequantize(int_y, cbcr, qt)[0], y_deq)  # int16 input gives the same float result


def test_stem_normalizes_with_its_buffers():
    y, cbcr, qt = _random_batch(3, 4, seed=1)
    stem = DctStem()
    stats = StemStats(
        y_mean=torch.linspace(-5, 5, 64),
        y_std=torch.linspace(1, 3, 64),
        cbcr_mean=torch.linspace(2, 4, 128),
        cbcr_std=torch.linspace(0.5, 8, 128),
        y_count=1,
        cbcr_count=1,
    )
    assert not stem.has_stats()
    stem.set_stats(stats)
    assert stem.has_stats()
    out_y, out_c = stem(y, cbcr, qt)
    ref_y = (y * qt[:, 0, :, None, None] - stats.y_mean[:, None, None]) / stats.y_std[:, None, None]
    q_c = torch.cat([qt[:, 1], qt[:, 2]], dim=1)[:, :, None, None]
    ref_c = (cbcr * q_c - stats.cbcr_mean[:, None, None]) / stats.cbcr_std[:, None, None]
    torch.testing.assert_close(out_y, ref_y)
    torch.testing.assert_close(out_c, ref_c)
    assert {"y_mean", "y_std", "cbcr_mean", "cbcr_std"} <= set(stem.state_dict())


def test_streaming_stats_equal_one_pass_stats():
    batches = [_random_batch(n, 4, seed=s) for s, n in enumerate((1, 3, 2))]
    stats = compute_stem_stats(batches, min_std=1e-6)
    ys, cs = zip(*(dequantize(*b) for b in batches), strict=True)
    y_all = torch.cat([t.double().transpose(0, 1).reshape(64, -1) for t in ys], dim=1)
    c_all = torch.cat([t.double().transpose(0, 1).reshape(128, -1) for t in cs], dim=1)
    torch.testing.assert_close(stats.y_mean, y_all.mean(1).float())
    torch.testing.assert_close(stats.y_std, y_all.std(1, unbiased=False).float())
    torch.testing.assert_close(stats.cbcr_mean, c_all.mean(1).float())
    torch.testing.assert_close(stats.cbcr_std, c_all.std(1, unbiased=False).float())
    assert stats.y_count == 6 * 16 and stats.cbcr_count == 6 * 4


def test_constant_channels_get_the_std_floor():
    y, cbcr, qt = _random_batch(2, 4, seed=3)
    y[:, 63] = 0
    stats = compute_stem_stats([(y, cbcr, qt)], min_std=1.0)
    assert stats.y_mean[63] == 0 and stats.y_std[63] == 1.0
    assert (stats.y_std[:63] > 1.0).all()


def test_stats_from_real_jpegs_standardize_them(tmp_path):
    batches = []
    for i in range(6):
        path = tmp_path / f"{i}.jpg"
        _smooth_jpeg(path, seed=i, quality=(90, 50)[i % 2])
        batches.append(_read_jpeg(path))
    stats = compute_stem_stats(batches)
    stem = DctStem()
    stem.set_stats(stats)
    ys, cs = zip(*(stem(*b) for b in batches), strict=True)
    assert (ys[0].shape, cs[0].shape) == ((1, 64, 6, 6), (1, 128, 3, 3))
    for outputs, std, min_varying in ((ys, stats.y_std, 4), (cs, stats.cbcr_std, 2)):
        flat = torch.cat([t.transpose(0, 1).reshape(t.shape[1], -1) for t in outputs], dim=1)
        varying = std > 1.0  # channels above the floor come out standardized
        assert varying[0] and varying.sum() >= min_varying
        zeros, ones = torch.zeros(int(varying.sum())), torch.ones(int(varying.sum()))
        torch.testing.assert_close(flat.mean(1)[varying], zeros, atol=1e-4, rtol=0)
        torch.testing.assert_close(flat.std(1, unbiased=False)[varying], ones, atol=1e-4, rtol=0)
    # the DC mean is the average dequantized DC: 8 x (mean level - 128)
    assert abs(float(stats.y_mean[0])) < 8 * 128


def test_dct_model_is_invariant_to_how_steps_split_the_coefficients():
    """model(y, cbcr, qt) depends on the dequantized product only: halve coefficients, double steps."""
    model = create_model("dct_cifar_upsampling", num_classes=4).eval()
    y, cbcr, qt = example_inputs(model, 2)
    y, cbcr = y * 2, cbcr * 2
    with torch.no_grad():
        a = model(y, cbcr, qt)
        b = model(y / 2, cbcr / 2, qt * 2)
        c = model(y, cbcr, qt * 2)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)  # the tables are really used


@pytest.mark.parametrize(
    ("shape_y", "shape_c", "shape_q", "message"),
    [
        ((1, 63, 4, 4), (1, 128, 2, 2), (1, 3, 64), "y must be"),
        ((1, 64, 4, 4), (1, 64, 2, 2), (1, 3, 64), "cbcr must be"),
        ((1, 64, 4, 4), (1, 128, 2, 2), (1, 2, 64), "qt must be"),
        ((1, 64, 4, 4), (1, 128, 4, 4), (1, 3, 64), "4:2:0"),
        ((2, 64, 4, 4), (1, 128, 2, 2), (2, 3, 64), "batch sizes"),
    ],
)
def test_stem_rejects_malformed_inputs(shape_y, shape_c, shape_q, message):
    with pytest.raises(ModelError, match=message):
        DctStem()(torch.zeros(shape_y), torch.zeros(shape_c), torch.ones(shape_q))


def test_stem_errors_for_missing_chroma_and_bad_stats():
    with pytest.raises(ModelError, match="chroma"):
        DctStem()(torch.zeros(1, 64, 4, 4), None, torch.ones(1, 3, 64))
    with pytest.raises(ModelError, match="no coefficient blocks"):
        compute_stem_stats([])
    good = compute_stem_stats([_random_batch(1, 4, seed=0)])
    with pytest.raises(ModelError, match="y_std"):
        DctStem().set_stats(StemStats(good.y_mean, torch.zeros(64), good.cbcr_mean, good.cbcr_std, 1, 1))
    with pytest.raises(ModelError, match="shape"):
        DctStem().set_stats(StemStats(good.y_mean[:10], good.y_std, good.cbcr_mean, good.cbcr_std, 1, 1))


@pytest.mark.slow
def test_stem_statistics_export_to_onnx(tmp_path):
    """The statistics travel inside the exported graph (dynamo exporter, dynamic batch)."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model = create_model("dct_cifar_late_concat", num_classes=3).eval()
    model.stem.set_stats(compute_stem_stats([_random_batch(2, 4, seed=5)]))
    batch = torch.export.Dim("batch")
    path = tmp_path / "model.onnx"
    torch.onnx.export(
        model,
        example_inputs(model, 2),
        str(path),
        dynamo=True,
        external_data=False,
        input_names=["y", "cbcr", "qt"],
        dynamic_shapes=({0: batch}, {0: batch}, {0: batch}),
        verbose=False,
    )
    y, cbcr, qt = _random_batch(3, 4, seed=6)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"y": y.numpy(), "cbcr": cbcr.numpy(), "qt": qt.numpy()})[0]
    with torch.no_grad():
        ref = model(y, cbcr, qt).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    model.stem.set_stats(compute_stem_stats([_random_batch(2, 4, seed=7)]))
    with torch.no_grad():
        assert not np.allclose(got, model(y, cbcr, qt).numpy(), atol=1e-3)  # the export froze the first stats
