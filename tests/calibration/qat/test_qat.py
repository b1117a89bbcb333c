"""Quantization-aware training and ODM: the parts (cooperative gate, regularisers, offsets, weight
clipping) on toy tensors, and whole runs on a tiny SR model and a tiny DCT classifier."""

from __future__ import annotations

import pytest
import torch
from helpers import hr_folder, tiny_sr_run
from torch import nn

from dctq.calibration import distributed as dd
from dctq.calibration.qat.config import QatConfig, QatEpochEnd, method_defaults
from dctq.calibration.qat.gradients import cooperative_backward
from dctq.calibration.qat.offsets import ChannelStats, select_offsets
from dctq.calibration.qat.regularizers import mismatch_loss, variance_loss
from dctq.calibration.qat.weight_clip import search_weight_clip
from dctq.calibration.quant.model import calibrate, quantize_model
from dctq.calibration.quant.quantizer import TensorQuantizer
from dctq.calibration.quant.recipe import LayerRule, build_recipe
from dctq.calibration.workflow.plan import QatPlan, check_plan, qat_state_path
from dctq.calibration.workflow.quantize import quantize_checkpoint
from dctq.common.errors import ConfigError, QuantizationError
from dctq.models.checkpoint import load_checkpoint


def test_cooperative_gate_keeps_the_regulariser_only_where_signs_agree():
    w = nn.Parameter(torch.tensor([1.0, 2.0, -1.0, 0.5]))
    rec = (w * torch.tensor([1.0, -1.0, 1.0, 0.0])).sum()  # d rec = [1, -1, 1, 0]
    reg = (w * torch.tensor([2.0, 3.0, -4.0, 5.0])).sum()  # d reg = [2, 3, -4, 5]
    conflicts, counted = cooperative_backward(rec, reg, [w], 0.5, dd.DistEnv())
    # element 0 agrees (1 + 0.5 * 2), 1 and 2 conflict (rec only), 3 has no reconstruction gradient
    assert w.grad.tolist() == [2.0, -1.0, 1.0, 0.0]
    assert conflicts.tolist() == [2] and counted.tolist() == [3]


def test_regularisers_measure_spread_and_range_mismatch():
    x = torch.tensor([[1.0, 3.0], [0.0, 0.0]])  # image stds 1 and 0
    assert float(variance_loss({"a": x})) == pytest.approx(0.5)
    q = TensorQuantizer(4, narrow_range=False, label="q")
    q.set_amax(torch.tensor(7.0))  # interval [-8, 7] at 4 bits (full range), span 15
    f = torch.tensor([8.0, -10.0, 0.0, 1.0])
    assert float(mismatch_loss({"a": f}, {"a": q})) == pytest.approx((1 + 4) / 4 / 15**2)


def test_offsets_go_to_the_layers_whose_channels_spread_most():
    stats = {
        "a": ChannelStats(torch.tensor([0.0, 5.0]), torch.tensor([1.0, 1.0]), 3.0, True),  # means apart
        "b": ChannelStats(torch.tensor([0.0, 0.1]), torch.tensor([0.1, 3.0]), 2.0, True),  # spreads apart
        "c": ChannelStats(torch.tensor([0.0, 0.0]), torch.tensor([1.0, 1.1]), 1.0, False),
        "d": ChannelStats(
            torch.tensor([0.0, 9.0]), torch.tensor([1.0, 1.0]), 1.0, False
        ),  # post-ReLU: no shift
    }
    assert select_offsets(stats, "both", 0.25) == (("a", "shift"), ("b", "scale"))
    assert select_offsets(stats, "shift", 0.5) == (("a", "shift"), ("b", "shift"))


def test_weight_clipping_search_lowers_the_layer_error_at_low_bits():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1))
    with torch.no_grad():
        net[0].weight.uniform_(-1, 1)
        net[0].weight[:, 0, 0, 0] = 1.8  # one outlier per output channel stretches the max range
    qmodel = quantize_model(net, build_recipe(bits="w3a8"))
    data = [torch.randn(4, 8, 6, 6) for _ in range(2)]

    def loop(m: nn.Module) -> None:
        for x in data:
            m(x)

    calibrate(qmodel, loop)
    x = data[0]
    ref = nn.functional.conv2d(qmodel[0].input_quantizer(x), qmodel[0].weight, qmodel[0].bias, padding=1)
    before = float((qmodel(x) - ref).square().mean())
    ratios = search_weight_clip(qmodel, loop)
    assert ratios["0"] < 1.0
    assert float((qmodel(x) - ref).square().mean()) < before


def test_config_rules_name_the_flags():
    with pytest.raises(QuantizationError, match="--variance-weight belong"):
        QatConfig(method="qat", variance_weight=0.1)
    with pytest.raises(QuantizationError, match="--cooperative gates a regulariser"):
        QatConfig(method="odm", cooperative=True)
    assert QatConfig(method="odm", **method_defaults("odm", 2)).mismatch_weight > 0
    with pytest.raises(QuantizationError, match="give --data"):
        check_plan("qat")
    with pytest.raises(QuantizationError, match="not --calib"):
        check_plan("odm", calib="cifar10", data="cifar10")
    with pytest.raises(
        QuantizationError, match="--offsets applies to --method odm only, not to --method qat"
    ):
        check_plan("qat", given={"--offsets"}, data="sr")
    with pytest.raises(QuantizationError, match="--data applies to --method qat / odm only"):
        check_plan("ptq", calib="x", data="sr")


@pytest.fixture(scope="module")
def sr_ckpt(tmp_path_factory):
    root = tmp_path_factory.mktemp("sr")
    folder = hr_folder(root / "hr", n=6, size=(40, 36))
    result, _ = tiny_sr_run(folder, root / "run")
    return result.best_path, folder


def _small(method: str, **changes) -> QatConfig:
    options = {"epochs": 2, "steps_per_epoch": 2, "batch_size": 2, "calib_batches": 2, "log_every": 1}
    return QatConfig(method=method, **{**method_defaults(method), **options, **changes})


def test_odm_run_on_an_sr_model_writes_a_loadable_quantized_checkpoint(sr_ckpt, tmp_path):
    ckpt, folder = sr_ckpt
    events = []
    result = quantize_checkpoint(
        ckpt, tmp_path / "q.pt", method="odm", recipe=build_recipe(bits="w4a4"),
        qat=QatPlan(folder, _small("odm", offset_fraction=0.5)), progress=events.append,
    )  # fmt: skip
    info = result.info["qat"]
    assert info["offsets"] and info["conflict_ratio"] and 0 < info["conflict_ratio_total"] < 1
    # layers before a quantized input get both gradients (the FP head too); the last block's conv2 and the
    # tail come after the last quantized input, so the regulariser does not reach them
    assert {"body.0.conv1", "body.7.conv1", "head"} <= set(info["conflict_ratio"])
    assert not {"body.7.conv2", "tail.1"} & set(info["conflict_ratio"])
    assert [e.epoch for e in events if isinstance(e, QatEpochEnd)] == [1, 2]
    assert not any(n.startswith(("head", "tail", "body_end")) for n in (q.name for q in result.quantizers))
    loaded = load_checkpoint(tmp_path / "q.pt")
    x = torch.rand(1, 3, 9, 11)
    assert torch.equal(loaded.model(x), result.model(x))
    assert qat_state_path(tmp_path / "q.pt").is_file()


class _Stop(Exception):
    pass


def test_a_resumed_run_repeats_the_straight_one(sr_ckpt, tmp_path):
    ckpt, folder = sr_ckpt
    config = _small("odm", offsets="none", variance_weight=0.0, cooperative=False, mismatch_weight=0.5)
    recipe = build_recipe(bits="w3a3")
    straight = quantize_checkpoint(
        ckpt, tmp_path / "a.pt", method="odm", recipe=recipe, qat=QatPlan(folder, config)
    )

    def stop_after_first(event) -> None:
        if isinstance(event, QatEpochEnd) and event.epoch == 1:
            raise _Stop

    with pytest.raises(_Stop):
        quantize_checkpoint(
            ckpt,
            tmp_path / "b.pt",
            method="odm",
            recipe=recipe,
            qat=QatPlan(folder, config),
            progress=stop_after_first,
        )
    assert not (tmp_path / "b.pt").exists() and qat_state_path(tmp_path / "b.pt").is_file()
    resumed = quantize_checkpoint(
        ckpt, tmp_path / "b.pt", method="odm", recipe=recipe, qat=QatPlan(folder, config, resume=True)
    )
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ConfigError, match="differ"):
        quantize_checkpoint(
            ckpt, tmp_path / "b.pt", method="odm", recipe=recipe,
            qat=QatPlan(folder, config.replace(lr=1e-3), resume=True),
        )  # fmt: skip


def test_plain_qat_of_a_dct_classifier(tmp_path, jpeg_folder):
    from helpers import tiny_train_run

    result, _ = tiny_train_run(jpeg_folder, tmp_path / "fp")
    q = quantize_checkpoint(
        result.best_path, tmp_path / "q.pt", method="qat", recipe=build_recipe(bits="w4a4"),
        qat=QatPlan(jpeg_folder, _small("qat", batch_size=4)),
    )  # fmt: skip
    assert q.info["qat"]["history"][-1]["score"] >= 0 and q.recipe.weight_bits == 4
    loaded = load_checkpoint(tmp_path / "q.pt")
    assert loaded.extra["quantization"]["method"] == "qat"
    assert not any(isinstance(m, nn.BatchNorm2d) for m in loaded.model.modules())  # folded after training


@pytest.mark.parametrize("version", [1, 2])
def test_odm_keeps_the_per_quantizer_overrides_of_layer_rules(sr_ckpt, tmp_path, version):
    """debug-control's LayerRule overrides under ODM: a float input and an 8-bit weight inside W4A4 stay so
    through offsets (v1), weight clipping and the mismatch loss (v2), into the written checkpoint."""
    ckpt, folder = sr_ckpt
    rules = (LayerRule("body.0.conv1", input="float"), LayerRule("body.1.conv1", weight=8))
    options = {"epochs": 1, "steps_per_epoch": 2, "batch_size": 2, "calib_batches": 2, "log_every": 1}
    extra = {"offset_fraction": 1.0} if version == 1 else {}
    config = QatConfig(method="odm", **{**method_defaults("odm", version), **options, **extra})
    result = quantize_checkpoint(
        ckpt, tmp_path / "q.pt", method="odm", recipe=build_recipe(bits="w4a4", rules=rules),
        qat=QatPlan(folder, config),
    )  # fmt: skip
    model = result.model
    assert model.get_submodule("body.0.conv1").input_quantizer is None
    assert model.get_submodule("body.0.conv1").weight_quantizer.bits == 4
    assert model.get_submodule("body.1.conv1").weight_quantizer.bits == 8
    loaded = load_checkpoint(tmp_path / "q.pt")
    x = torch.rand(1, 3, 9, 11)
    assert torch.equal(loaded.model(x), result.model(x))
