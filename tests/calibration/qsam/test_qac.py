"""QAC confidence, its weighted loss, and IJG tables checked against what Pillow/libjpeg write."""

from __future__ import annotations

import io
from pathlib import Path

import jpeglib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from dctq.calibration.qsam.qac import qac_batch_loss, qac_weighted_loss
from dctq.common.errors import DataError
from dctq.jpeg.quality import ijg_qt, ijg_quant_table
from dctq.models.qabn_routing import qac_confidence


def _pillow_jpeg(quality: int) -> bytes:
    rgb = np.random.default_rng(quality).integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _pillow_tables(quality: int) -> np.ndarray:
    """[2, 64] as Pillow reports them (current Pillow: natural order)."""
    q = Image.open(io.BytesIO(_pillow_jpeg(quality))).quantization
    return np.array([q[0], q[1]], dtype=np.int64)


def _qt(tables: np.ndarray) -> torch.Tensor:
    """[2, 64] -> qt [1, 3, 64] with Cr = Cb, as the reader returns for IJG files."""
    return torch.tensor(np.stack([tables[0], tables[1], tables[1]])[None], dtype=torch.float32)


def test_pillow_quantization_is_natural_order(tmp_path: Path) -> None:
    path = tmp_path / "q50.jpg"
    path.write_bytes(_pillow_jpeg(50))
    ref = jpeglib.read_dct(str(path)).qt.reshape(-1, 64)
    np.testing.assert_array_equal(_pillow_tables(50), ref[:2])


@pytest.mark.parametrize(
    ("quality", "expected"), [(95, 0.234), (90, 0.115), (75, 0.045), (50, 0.023), (10, 0.0057)]
)
def test_confidence_of_pillow_tables_matches_methods(quality: int, expected: float) -> None:
    c = qac_confidence(_qt(_pillow_tables(quality)))
    assert c.shape == (1,)
    assert abs(float(c[0]) - expected) < 1e-3


def test_confidence_is_one_for_unit_tables_and_per_sample() -> None:
    qt = torch.ones(3, 3, 64, dtype=torch.uint8)
    qt[1, :2] = 2  # every step 2 -> 1/2
    qt[2, 2] = 50  # Cr is not part of c(Q)
    np.testing.assert_allclose(qac_confidence(qt).numpy(), [1.0, 0.5, 1.0], rtol=1e-6)


@pytest.mark.parametrize("quality", [1, 10, 24, 25, 50, 75, 90, 95, 100])
def test_ijg_tables_equal_pillow(quality: int) -> None:
    table = ijg_quant_table(quality)
    assert table.shape == (2, 64) and table.dtype == np.uint16
    np.testing.assert_array_equal(table, _pillow_tables(quality))


def test_ijg_qt_layout() -> None:
    qt = ijg_qt([90, 10])
    assert qt.shape == (2, 3, 64) and qt.dtype == torch.float32
    np.testing.assert_array_equal(qt[1, 0].numpy(), ijg_quant_table(10)[0])
    torch.testing.assert_close(qt[:, 1], qt[:, 2])
    assert float(qac_confidence(qt)[0]) > float(qac_confidence(qt)[1])


def test_weighted_loss_is_confidence_times_ce() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 5, generator=g, requires_grad=True)
    targets = torch.tensor([0, 4, 2, 1])
    qt = ijg_qt([95, 90, 50, 10])
    c = qac_confidence(qt)
    for ls in (0.0, 0.1):
        ce = F.cross_entropy(logits, targets, reduction="none", label_smoothing=ls)
        torch.testing.assert_close(
            qac_weighted_loss(logits, targets, qt, label_smoothing=ls), (c * ce).mean()
        )
    # The low-quality sample's gradient is scaled down by its confidence: no renormalisation.
    qac_weighted_loss(logits, targets, qt).backward()
    ce_grad = torch.autograd.functional.jacobian(
        lambda z: F.cross_entropy(z, targets, reduction="none").mean(), logits.detach()
    )
    torch.testing.assert_close(logits.grad, ce_grad * c[:, None])


def test_normalized_loss_keeps_relative_weights_at_ce_scale() -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 5, generator=g)
    targets = torch.tensor([3, 0, 2, 2])
    qt = ijg_qt([90, 60, 30, 10])
    c = qac_confidence(qt)
    ce = F.cross_entropy(logits, targets, reduction="none")
    got = qac_weighted_loss(logits, targets, qt, normalize=True)
    torch.testing.assert_close(got, (c / c.mean() * ce).mean())
    # One quality in the batch: every weight is 1, the loss is plain cross-entropy.
    same = ijg_qt([10] * 4)
    torch.testing.assert_close(qac_weighted_loss(logits, targets, same, normalize=True), ce.mean())
    assert float(qac_weighted_loss(logits, targets, same)) < 0.01 * float(ce.mean())


def test_bad_tables_raise() -> None:
    with pytest.raises(DataError, match=r"\[N, 3, 64\]"):
        qac_confidence(torch.ones(2, 64))
    qt = torch.ones(1, 3, 64)
    qt[0, 0, 5] = 0.0
    with pytest.raises(DataError, match="step of 0"):
        qac_confidence(qt)
    with pytest.raises(DataError):
        ijg_qt([])


def test_batch_loss_is_qsams_meta_stage_scale() -> None:
    # LiMaPKU/QSAM's meta stage: qac(inputs) = sum over the [B, 128] table tensor of 1/Q, divided by 128,
    # times the batch-mean cross-entropy. Written out here from the tables, not from qac_confidence.
    torch.manual_seed(0)
    logits, labels = torch.randn(8, 10), torch.randint(0, 10, (8,))
    qt = ijg_qt([30] * 8)
    reference = (1.0 / qt[:, :2].reshape(8, 128)).sum() / 128 * F.cross_entropy(logits, labels)
    torch.testing.assert_close(qac_batch_loss(logits, labels, qt), reference)
    # one quality per batch: B times the per-sample form that the base stage uses
    torch.testing.assert_close(qac_batch_loss(logits, labels, qt), 8 * qac_weighted_loss(logits, labels, qt))


def test_meta_config_scale_defaults_to_qsams_and_old_configs_keep_theirs() -> None:
    from dctq.calibration.qsam.episode import plain_ce
    from dctq.calibration.qsam.meta import MetaConfig
    from dctq.common.errors import ConfigError

    assert MetaConfig().episode_loss() is qac_batch_loss
    assert MetaConfig(qac_scale="sample").episode_loss() is qac_weighted_loss
    assert MetaConfig(qac=False).episode_loss() is plain_ce
    old = MetaConfig(qac_scale="sample").to_dict()
    old["version"] = 1
    del old["fields"]["qac_scale"]
    assert MetaConfig.from_dict(old).qac_scale == "sample"  # meta stages saved before the fix trained so
    assert MetaConfig.from_dict(MetaConfig().to_dict()) == MetaConfig()
    with pytest.raises(ConfigError, match="--qac-scale must be one of batch, sample"):
        MetaConfig(qac_scale="mean")
