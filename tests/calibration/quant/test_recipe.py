"""LayerRule overrides: per-quantizer bit widths and float tensors, their saved form, the CLI's
--skip/--override translation, and what they do to a calibrated model."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import tiny_dct

from dctq.calibration.ptq import ptq
from dctq.calibration.quant.checkpoint import save_quantized
from dctq.calibration.quant.model import iter_quantizers, quantize_model
from dctq.calibration.quant.recipe import (
    FLOAT,
    PRESETS,
    LayerQuant,
    LayerRule,
    QuantRecipe,
    build_recipe,
    parse_override,
    skip_rules,
)
from dctq.common.errors import QuantizationConfigError, QuantizationError
from dctq.models.checkpoint import LoadedCheckpoint, load_checkpoint
from dctq.models.flops import example_inputs

FIRST = "stages.0.0.conv1"


def _bits(qmodel) -> dict[str, int]:
    return {name: q.bits for name, q in iter_quantizers(qmodel)}


def _sqnr(ref: torch.Tensor, out: torch.Tensor) -> float:
    return float(10 * torch.log10(ref.pow(2).mean() / (ref - out).pow(2).mean()))


def test_overrides_set_the_widths_of_one_layers_quantizers():
    recipe = PRESETS["w4a4"].with_rules([LayerRule(FIRST, input=8), LayerRule("fc", weight=8)])
    bits = _bits(quantize_model(tiny_dct(), recipe))
    assert bits[f"{FIRST}.input_quantizer"] == 8 and bits[f"{FIRST}.weight_quantizer"] == 4
    assert bits["fc.weight_quantizer"] == 8 and bits["fc.input_quantizer"] == 4
    assert bits["stages.0.0.conv2.input_quantizer"] == 4


def test_float_overrides_leave_the_quantizer_out():
    recipe = QuantRecipe(rules=(LayerRule(FIRST, input=FLOAT), LayerRule("fc", weight=FLOAT)))
    qmodel = quantize_model(tiny_dct(), recipe)
    names = set(_bits(qmodel))
    assert f"{FIRST}.input_quantizer" not in names and f"{FIRST}.weight_quantizer" in names
    assert "fc.weight_quantizer" not in names and "fc.input_quantizer" in names
    # a layer with both tensors float, and an Add whose inputs are float, are the float layers
    both = quantize_model(
        tiny_dct(),
        QuantRecipe(rules=(LayerRule("*add", input=FLOAT), LayerRule("fc", weight=FLOAT, input=FLOAT))),
    )
    assert type(both.fc) is torch.nn.Linear
    assert not any("add" in n for n in _bits(both))


@torch.no_grad()
def test_eight_bit_inputs_lift_the_sqnr_of_a_w4a4_model():
    """The network input at 4 bits is where low-bit DCT models lose most; 8 bits there must help."""
    model = tiny_dct()
    batches = [example_inputs(model, 8, seed=s) for s in range(3)]
    test = example_inputs(model, 16, seed=9)
    ref = model(*test)
    plain = _sqnr(ref, ptq(model, PRESETS["w4a4"], batches)(*test))
    eight = ptq(model, PRESETS["w4a4"].with_rules([LayerRule(FIRST, input=8)]), batches)
    all_inputs = ptq(model, PRESETS["w4a4"].with_rules([LayerRule("*", input=8)]), batches)
    assert plain < _sqnr(ref, eight(*test)) < _sqnr(ref, all_inputs(*test)) - 3.0
    # an 8-bit override inside a low-bit recipe is signed INT8
    q = dict(iter_quantizers(eight))[f"{FIRST}.input_quantizer"]
    assert (q.qmin, q.qmax) == (-128, 127)


def test_layer_quant_resolves_first_match():
    recipe = QuantRecipe(weight_bits=4, act_bits=4, rules=(LayerRule("fc", "skip"), LayerRule("*", input=8)))
    assert recipe.layer_quant("fc") is None
    assert recipe.layer_quant("stages.0") == LayerQuant(4, 8)
    assert QuantRecipe(act_bits=6).layer_quant("x") == LayerQuant(8, 6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"action": "skip", "input": 8}, "skips the layer and also sets input"),
        ({"input": 9}, "input must be a bit width 2..8 or 'float'"),
        ({"weight": "half"}, "weight must be a bit width"),
        ({"weight": True}, "weight must be a bit width"),
    ],
)
def test_bad_rules_are_refused(kwargs, message):
    with pytest.raises(QuantizationConfigError, match=message):
        LayerRule("fc", **kwargs)


def test_saved_form_names_only_the_overrides_set_and_round_trips():
    recipe = QuantRecipe(rules=(LayerRule("fc", "skip"), LayerRule("a.*", input=FLOAT, weight=6)))
    saved = json.loads(json.dumps(recipe.to_dict()))
    assert saved["rules"] == [
        {"pattern": "fc", "action": "skip"},
        {"pattern": "a.*", "action": "quantize", "weight": 6, "input": "float"},
    ]
    assert QuantRecipe.from_dict(saved) == recipe
    # without overrides the form is version 1's, byte for byte (sidecar hashes do not move)
    assert QuantRecipe().to_dict()["rules"] == [{"pattern": "qabn_mixer.*", "action": "skip"}]


def test_exportable_counts_every_width_a_rule_sets():
    assert QuantRecipe(rules=(LayerRule("x", input=FLOAT),)).exportable
    assert not QuantRecipe(rules=(LayerRule("x", weight=4),)).exportable
    assert (
        PRESETS["w4a4"].with_rules([LayerRule("*", weight=8, input=8)]).exportable is False
    )  # fields still 4


def test_parse_override_and_skip_rules():
    assert parse_override("front.upscale.0:input=8") == LayerRule("front.upscale.0", input=8)
    assert parse_override("stages.*:weight=float,input=6") == LayerRule("stages.*", weight=FLOAT, input=6)
    assert skip_rules(["fc", "stages.0.*"]) == (LayerRule("fc", "skip"), LayerRule("stages.0.*", "skip"))
    for bad in ("fc", "fc:bits=8", "fc:input=8,input=4", ":input=8", "fc:input=12"):
        with pytest.raises(QuantizationError, match="--override"):
            parse_override(bad)


def test_build_recipe_puts_command_line_rules_first():
    recipe = build_recipe(bits="w4a4", rules=[LayerRule("fc", "skip")])
    assert recipe.rules[0] == LayerRule("fc", "skip") and recipe.rules[1:] == PRESETS["w4a4"].rules
    assert build_recipe(PRESETS["int8-max"]) == PRESETS["int8-max"]


def test_a_checkpoint_with_overrides_reloads_as_the_same_model(tmp_path):
    model = tiny_dct()
    recipe = PRESETS["w4a4"].with_rules([LayerRule(FIRST, input=8), LayerRule("fc", weight=FLOAT)])
    qmodel = ptq(model, recipe, [example_inputs(model, 8, seed=s) for s in range(2)])
    fp = LoadedCheckpoint(model, "dct_cifar_upsampling", {"widths": [8, 16], "depths": [1, 1]}, [], {})
    path = save_quantized(tmp_path / "q.pt", qmodel, fp)
    back = load_checkpoint(path).model
    x = example_inputs(model, 4, seed=5)
    assert torch.equal(back(*x), qmodel(*x))
    assert _bits(back) == _bits(qmodel)
