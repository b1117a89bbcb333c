"""Recipes as TOML files: read on top of a preset, written so that they read back equal, refused with
the file named when anything is unknown."""

from __future__ import annotations

import pytest

from dctq.calibration.quant.recipe import FLOAT, PRESETS, LayerRule, QuantRecipe, build_recipe
from dctq.calibration.quant.recipe_file import load_recipe, recipe_toml, save_recipe
from dctq.common.errors import QuantizationError

TEXT = """
preset = "w4a4"
calibrator = "percentile"
[calibrator_args]
percentile = 99.9
[[rules]]
pattern = "front.upscale.0"
input = 8
[[rules]]
pattern = "fc"
action = "skip"
"""


def test_a_file_reads_on_top_of_its_preset(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text(TEXT)
    recipe = load_recipe(path)
    assert (recipe.weight_bits, recipe.act_bits, recipe.act_unsigned) == (4, 4, True)  # from the preset
    assert recipe.calibrator == "percentile" and recipe.calibrator_args == (("percentile", 99.9),)
    assert recipe.rules == (
        LayerRule("front.upscale.0", input=8),
        LayerRule("fc", "skip"),
    )  # replaced, in order
    # the command line's --bits and rules still apply on top
    assert build_recipe(recipe, bits="w8a8", rules=[LayerRule("x", "skip")]).rules[0] == LayerRule(
        "x", "skip"
    )


@pytest.mark.parametrize(
    "recipe",
    [
        QuantRecipe(),
        PRESETS["int8-percentile"],
        PRESETS["w3a3"].with_rules([LayerRule("a.*", weight=FLOAT, input=8), LayerRule("b", "skip")]),
    ],
)
def test_written_files_read_back_equal(tmp_path, recipe):
    path = save_recipe(tmp_path / "sub" / "r.toml", recipe)
    assert load_recipe(path) == recipe
    assert path.read_text() == recipe_toml(recipe)


@pytest.mark.parametrize(
    "text, message",
    [
        ("weight_bitz = 4", "has no field 'weight_bitz'"),
        ("preset = 'w9'", "unknown recipe 'w9'"),
        ("[[rules]]\npattern = 'fc'\ninput = 12", "input must be a bit width"),
        ("[[rules]]\npattern = 'fc'\nwhen = 1", "LayerRule has no field 'when'"),
        ("act_bits = ", "is not valid TOML"),
    ],
)
def test_bad_files_are_refused_naming_the_file(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(QuantizationError, match=message) as err:
        load_recipe(path)
    assert str(path) in str(err.value)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(QuantizationError, match="cannot read it"):
        load_recipe(tmp_path / "none.toml")
