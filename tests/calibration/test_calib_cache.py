"""Calibration caches: ranges derived from saved statistics equal calibrating on the same batches, for
every calibrator, width, skip list and Add layout; another model's cache is refused."""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_dct

from dctq.calibration.calib_cache import collect_statistics, load_cache, ptq_from_cache, save_cache
from dctq.calibration.calibrators.registry import CALIBRATORS
from dctq.calibration.calibrators.statistics import StatisticsCalibrator
from dctq.calibration.ptq import ptq
from dctq.calibration.quant.model import iter_quantizers
from dctq.calibration.quant.recipe import PRESETS, LayerRule, QuantRecipe
from dctq.common.errors import QuantizationError
from dctq.models.flops import example_inputs


@pytest.fixture(scope="module")
def setup():
    model = tiny_dct()
    batches = [example_inputs(model, 8, seed=s) for s in range(3)]
    return (
        model,
        batches,
        collect_statistics(model, batches, data={"data": "random"}, arch="dct_cifar_upsampling"),
    )


def _ranges(qmodel) -> dict[str, tuple[list[float], list[int]]]:
    return {n: (q.amax.tolist(), q.grid.tolist()) for n, q in iter_quantizers(qmodel)}


RECIPES = [
    *(QuantRecipe(calibrator=c) for c in sorted(CALIBRATORS)),
    QuantRecipe(calibrator="percentile", calibrator_args={"percentile": 99.0}),
    PRESETS["w4a4"],
    PRESETS["w3a3"].with_rules([LayerRule("stages.0.0.conv1", input=8), LayerRule("fc", "skip")]),
    QuantRecipe(calibrator="entropy", add_inputs="both"),
]


@pytest.mark.parametrize(
    "recipe", RECIPES, ids=lambda r: f"{r.calibrator}-w{r.weight_bits}a{r.act_bits}-{r.add_inputs}"
)
@torch.no_grad()
def test_ranges_from_the_cache_equal_calibrating_directly(setup, recipe):
    model, batches, cache = setup
    direct = ptq(model, recipe, batches)
    cached = ptq_from_cache(model, recipe, cache)
    assert _ranges(cached) == _ranges(direct)
    x = example_inputs(model, 4, seed=11)
    assert torch.equal(cached(*x), direct(*x))


def test_the_file_round_trips_and_names_model_and_data(setup, tmp_path):
    model, _, cache = setup
    path = save_cache(tmp_path / "c.pt", cache)
    back = load_cache(path, model=model)
    assert back.data == {"data": "random"} and back.model["arch"] == "dct_cifar_upsampling"
    assert set(back.statistics) == set(cache.statistics)
    name = next(iter(cache.statistics))
    assert torch.equal(back.statistics[name].hist, cache.statistics[name].hist)
    torch.load(path, weights_only=True)  # plain data


def test_another_model_is_refused(setup, tmp_path):
    _, _, cache = setup
    path = save_cache(tmp_path / "c.pt", cache)
    other = tiny_dct(seed=1)
    with pytest.raises(QuantizationError, match=r"statistics of another model.*--calib-cache"):
        load_cache(path, model=other)
    with pytest.raises(QuantizationError, match="another model"):
        ptq_from_cache(other, QuantRecipe(), cache)


def test_a_calibrator_with_other_bins_or_folding_is_refused(setup):
    model, batches, cache = setup
    with pytest.raises(
        QuantizationError, match="collected with BatchNorm folded and this recipe has fold_bn=False"
    ):
        ptq_from_cache(model, QuantRecipe(fold_bn=False), cache)
    unfolded = collect_statistics(model, batches, fold_bn=False)
    recipe = QuantRecipe(fold_bn=False, calibrator="mse")
    assert _ranges(ptq_from_cache(model, recipe, unfolded)) == _ranges(ptq(model, recipe, batches))
    with pytest.raises(QuantizationError, match="num_bins=1024 cannot use statistics collected with 2048"):
        ptq_from_cache(model, QuantRecipe(calibrator="mse", calibrator_args={"num_bins": 1024}), cache)


def test_damaged_and_foreign_files_are_named(tmp_path):
    bad = tmp_path / "x.pt"
    torch.save({"format": "dctq.checkpoint"}, bad)
    with pytest.raises(QuantizationError, match="not a dctq calibration cache"):
        load_cache(bad)
    with pytest.raises(QuantizationError, match="not found"):
        load_cache(tmp_path / "none.pt")


def test_statistics_calibrator_collects_max_sign_and_histogram():
    cal = StatisticsCalibrator(8, None, num_bins=16)
    cal.observe(torch.tensor([0.0, 1.0, -3.0]))
    cal.observe(torch.tensor([2.0, 5.0]))
    stats = cal.statistics()
    assert stats.amax == 5.0 and stats.negative and float(stats.hist.sum()) == 5
    assert float(cal.compute_amax()) == 5.0
