"""Quantized layers by name: running some in float equals quantizing without them (PTQ ranges come
from the float network), and returning them to float saves and reloads as that model."""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_dct

from dctq.calibration.ptq import ptq
from dctq.calibration.quant.checkpoint import save_quantized
from dctq.calibration.quant.layers import layers_in_float, only_layers_quantized, quantized_layers, to_float
from dctq.calibration.quant.model import recipe_of
from dctq.calibration.quant.quantizer import QuantState
from dctq.calibration.quant.recipe import PRESETS, LayerRule
from dctq.common.errors import QuantizationError
from dctq.models.checkpoint import LoadedCheckpoint, load_checkpoint
from dctq.models.flops import example_inputs

RECIPE = PRESETS["w4a4"]


@pytest.fixture(scope="module")
def setup():
    model = tiny_dct()
    batches = [example_inputs(model, 8, seed=s) for s in range(2)]
    return model, batches, ptq(model, RECIPE, batches), example_inputs(model, 8, seed=7)


def test_layers_are_named_as_in_the_float_model(setup):
    _, _, qmodel, _ = setup
    layers = quantized_layers(qmodel)
    assert "stages.0.0.conv1" in layers and "fc" in layers and "stages.0.0.add" in layers
    assert [q.label for q in layers["fc"]] == ["fc.input_quantizer", "fc.weight_quantizer"]


@torch.no_grad()
def test_a_layer_in_float_is_the_model_quantized_without_it(setup):
    model, batches, qmodel, x = setup
    skipped = ptq(
        model, RECIPE.with_rules([LayerRule("fc", "skip"), LayerRule("stages.0.0.add", "skip")]), batches
    )
    with layers_in_float(qmodel, ["fc", "stages.0.0.add"]):
        assert torch.equal(qmodel(*x), skipped(*x))
    assert all(q.state is QuantState.QUANTIZING for qs in quantized_layers(qmodel).values() for q in qs)
    assert not torch.equal(qmodel(*x), skipped(*x))


@torch.no_grad()
def test_only_one_layer_quantized(setup):
    model, batches, qmodel, x = setup
    others = [n for n in quantized_layers(qmodel) if n != "fc"]
    alone = ptq(model, RECIPE.with_rules([LayerRule(n, "skip") for n in others]), batches)
    with only_layers_quantized(qmodel, ["fc"]):
        assert torch.equal(qmodel(*x), alone(*x))


def test_unknown_layers_are_named(setup):
    _, _, qmodel, _ = setup
    with pytest.raises(QuantizationError, match="stem is not a quantized layer"):
        with layers_in_float(qmodel, ["stem"]):
            pass


@torch.no_grad()
def test_to_float_saves_and_reloads_as_that_model(tmp_path):
    model = tiny_dct()
    batches = [example_inputs(model, 8, seed=s) for s in range(2)]
    qmodel = ptq(model, RECIPE, batches)
    x = example_inputs(model, 4, seed=3)
    with layers_in_float(qmodel, ["fc", "stages.0.0.conv1"]):
        expected = qmodel(*x)
    to_float(qmodel, ["fc", "stages.0.0.conv1"])
    assert type(qmodel.fc) is torch.nn.Linear and torch.equal(qmodel(*x), expected)
    assert recipe_of(qmodel).rules[:2] == (LayerRule("fc", "skip"), LayerRule("stages.0.0.conv1", "skip"))
    fp = LoadedCheckpoint(model, "dct_cifar_upsampling", {"widths": [8, 16], "depths": [1, 1]}, [], {})
    back = load_checkpoint(save_quantized(tmp_path / "q.pt", qmodel, fp)).model
    assert torch.equal(back(*x), expected)
    with pytest.raises(QuantizationError, match="leaves a float model"):
        to_float(qmodel, list(quantized_layers(qmodel)))
