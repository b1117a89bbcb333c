"""Layer sensitivity, the fallback to float and the chart, on a tiny W4A4 DCT model whose labels are the
FP model's own predictions (FP top-1 = 100%, so every point lost is quantization's)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import tiny_dct
from PIL import Image

from dctq.calibration.ptq import ptq
from dctq.calibration.quant.layers import only_layers_quantized, quantized_layers
from dctq.calibration.quant.model import recipe_of
from dctq.calibration.quant.recipe import PRESETS, LayerRule
from dctq.calibration.sensitivity.analysis import held_out, layer_sensitivity, score
from dctq.calibration.sensitivity.chart import GAIN, LOSS, sensitivity_png
from dctq.calibration.sensitivity.fallback import fallback
from dctq.common.errors import QuantizationError
from dctq.models.flops import example_inputs


def _batches(model, n_batches: int, seed: int) -> list[dict]:
    out = []
    for s in range(n_batches):
        y, cbcr, qt = example_inputs(model, 16, seed=seed + s)
        with torch.no_grad():
            label = model(y, cbcr, qt).argmax(dim=1)
        out.append({"y": y, "cbcr": cbcr, "qt": qt, "label": label})
    return out


@pytest.fixture(scope="module")
def setup():
    model = tiny_dct()
    calib = _batches(model, 2, 0)
    data = held_out(model, _batches(model, 4, 100))
    return model, calib, data


def test_fp_is_the_reference(setup):
    model, _, data = setup
    s = score(model, data)
    assert (s.top1, s.agreement, s.sqnr_db) == (1.0, 1.0, math.inf)


def test_layers_are_ranked_by_what_float_gains(setup):
    model, calib, data = setup
    qmodel = ptq(model, PRESETS["w4a4"], calib)
    report = layer_sensitivity(qmodel, data, metric="sqnr")
    assert set(report.ranking()) == set(quantized_layers(qmodel))
    gains = [report.gain(r) for r in report.layers]
    assert gains == sorted(gains, reverse=True) and gains[0] > 0
    # "alone" is the model with only that layer quantized
    row = report.layers[-1]
    with only_layers_quantized(qmodel, [row.layer]):
        assert score(qmodel, data) == row.alone
    assert report.quantized.top1 < 1.0
    data_dict = report.to_dict()
    assert data_dict["fp"]["sqnr_db"] is None and data_dict["layers"][0]["rank"] == 1
    with pytest.raises(QuantizationError, match="--sensitivity-metric"):
        layer_sensitivity(qmodel, data, metric="loss")


def test_fallback_returns_the_most_sensitive_layers_until_the_drop_is_met(setup):
    model, calib, data = setup
    qmodel = ptq(model, PRESETS["w4a4"], calib)
    report = layer_sensitivity(qmodel, data)
    start_drop = 100 * (1 - report.quantized.top1)
    target = start_drop / 3
    result = fallback(qmodel, data, report, target)
    assert result.met and result.returned == tuple(report.ranking()[: len(result.returned)])
    assert result.drop(result.final) <= target < result.drop(result.start)
    # in place: the layers are float modules now, the recipe skips them, the score is the final one
    assert not set(result.returned) & set(quantized_layers(qmodel))
    assert recipe_of(qmodel).rules[: len(result.returned)] == tuple(
        LayerRule(n, "skip") for n in result.returned
    )
    assert score(qmodel, data) == result.final
    assert result.to_dict()["returned_to_float"] == list(result.returned)


def test_fallback_leaves_a_model_within_the_drop_alone(setup):
    model, calib, data = setup
    qmodel = ptq(model, PRESETS["int8"], calib)
    report = layer_sensitivity(qmodel, data)
    result = fallback(qmodel, data, report, 100.0)
    assert result.met and result.returned == () and result.steps == ()
    with pytest.raises(QuantizationError, match="--max-drop must be >= 0"):
        fallback(qmodel, data, report, -1)


def test_chart_is_a_png_with_both_bars(setup, tmp_path):
    model, calib, data = setup
    report = layer_sensitivity(ptq(model, PRESETS["w4a4"], calib), data)
    path = sensitivity_png(report, tmp_path / "s.png")
    img = np.asarray(Image.open(path).convert("RGB"))
    assert img.shape[0] > 16 * len(report.layers)
    colours = {tuple(c) for c in img.reshape(-1, 3)}
    assert GAIN in colours and LOSS in colours


def test_held_out_needs_labelled_batches(setup):
    model, _, _ = setup
    with pytest.raises(QuantizationError, match="need labels"):
        held_out(model, [example_inputs(model, 2)])
    with pytest.raises(QuantizationError, match="empty"):
        held_out(model, [])
