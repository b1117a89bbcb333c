"""Recipes, quantize_model / calibrate / ptq, SQNR floors and ONNX Q/DQ export."""

from __future__ import annotations

import dataclasses
import io
import json

import pytest
import torch
from torch import nn

from dctq.calibration.ptq import model_args, ptq
from dctq.calibration.quant.model import (
    calibrate,
    clip_weights,
    iter_quantizers,
    quantization_summary,
    quantize_model,
    recipe_of,
    set_quant_state,
)
from dctq.calibration.quant.modules import QuantConv2d, QuantLinear, QuantResidualAdd
from dctq.calibration.quant.recipe import PRESETS, LayerRule, QuantRecipe, get_recipe
from dctq.common.errors import QuantizationError
from dctq.models.registry import create_model
from dctq.models.resnet import ResidualAdd


class TinyNet(nn.Module):
    """conv-bn-relu, a residual block with ResidualAdd, a strided conv with bias, pool, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.conv1 = nn.Conv2d(16, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.add = ResidualAdd()
        self.down = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        x = torch.relu(self.add(out, x))
        return self.fc(torch.relu(self.down(x)).mean(dim=(2, 3)))


def _tiny(seed: int = 0) -> TinyNet:
    torch.manual_seed(seed)
    model = TinyNet().eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model


def _sqnr(ref: torch.Tensor, out: torch.Tensor) -> float:
    return float(10 * torch.log10(ref.pow(2).mean() / (ref - out).pow(2).mean()))


# ---------------------------------------------------------------- recipes


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_round_trips_through_json(name):
    recipe = get_recipe(name)
    data = json.loads(json.dumps(recipe.to_dict()))
    assert data["type"] == "QuantRecipe" and data["version"] == 1
    assert QuantRecipe.from_dict(data) == recipe


def test_custom_recipe_round_trip_and_normalisation():
    recipe = QuantRecipe(
        weight_bits=6,
        act_bits=5,
        calibrator="percentile",
        calibrator_args={"percentile": 99.9, "num_bins": 1024},
        rules=[LayerRule("fc", "skip"), LayerRule("stages.*")],
        fold_bn=False,
        act_narrow_range=True,
        act_unsigned=True,
    )
    assert recipe.calibrator_args == (("num_bins", 1024), ("percentile", 99.9))
    assert isinstance(recipe.rules, tuple)
    assert QuantRecipe.from_dict(json.loads(json.dumps(recipe.to_dict()))) == recipe
    assert hash(recipe) == hash(dataclasses.replace(recipe))
    assert not recipe.exportable and QuantRecipe().exportable


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"type": "OtherRecipe"}, "not a QuantRecipe"),
        ({"version": 99}, "version 99 is not supported"),
        ({"colour": "red"}, "no field 'colour'"),
        ({"weight_bits": 9}, "weight_bits"),
        ({"calibrator": "kl"}, "unknown"),
        ({"calibrator_args": {"percentile": 99.0}}, "no option 'percentile'"),
        ({"rules": [{"pattern": "fc", "action": "drop"}]}, "action"),
        ({"rules": [{"pattern": "fc", "when": "always"}]}, "malformed"),
        ({"act_unsigned": True}, "act_bits < 8"),
    ],
)
def test_from_dict_rejects_bad_input(change, message):
    data = {**QuantRecipe().to_dict(), **change}
    with pytest.raises(QuantizationError, match=message):
        QuantRecipe.from_dict(data)


def test_rules_first_match_wins_and_default_quantizes():
    recipe = QuantRecipe(rules=(LayerRule("layer1.conv1", "quantize"), LayerRule("layer1.*", "skip")))
    assert recipe.action_for("layer1.conv1") == "quantize"
    assert recipe.action_for("layer1.conv2") == "skip"
    assert recipe.action_for("fc") == "quantize"
    assert QuantRecipe().action_for("qabn_mixer.net.0") == "skip"


# ---------------------------------------------------------------- quantize_model / calibrate


def test_quantize_model_inserts_quantizers_per_rules_and_copies():
    model = _tiny()
    q = quantize_model(model, QuantRecipe(rules=(LayerRule("fc", "skip"),)))
    assert isinstance(model.conv1, nn.Conv2d) and not isinstance(model.conv1, QuantConv2d)
    assert isinstance(q.conv1, QuantConv2d) and isinstance(q.stem[0], QuantConv2d)
    assert isinstance(q.add, QuantResidualAdd) and type(q.fc) is nn.Linear
    assert isinstance(q.bn1, nn.Identity)  # folded
    assert recipe_of(q).rules[0].pattern == "fc" and recipe_of(model) is None
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():  # quantizers start disabled: the folded float function
        torch.testing.assert_close(q(x), model(x), atol=1e-5, rtol=1e-5)
    with pytest.raises(QuantizationError, match="already holds quantizers"):
        quantize_model(q)
    with pytest.raises(QuantizationError, match="no layer"):
        quantize_model(model, QuantRecipe(rules=(LayerRule("*", "skip"),)))


@pytest.mark.parametrize("calibrator", ["max", "percentile", "entropy", "mse"])
def test_w8a8_sqnr_above_floor(calibrator):
    model = _tiny()
    x = torch.randn(8, 3, 16, 16)
    args = {"num_bins": 512} if calibrator in ("mse", "entropy") else {}  # fewer bins: faster search
    q = quantize_model(model, QuantRecipe(calibrator=calibrator, calibrator_args=args))
    calibrate(q, lambda m: m(x))
    with torch.no_grad():
        ref, out = model(x), q(x)
    assert _sqnr(ref, out) > 30.0  # measured ~41 dB for every calibrator
    set_quant_state(q, "disabled")
    with torch.no_grad():
        torch.testing.assert_close(q(x), ref, atol=1e-5, rtol=1e-5)


# Floors for W/A bits on TinyNet (measured with mse: 36, 30, 23, 16 dB; ~6 dB per bit).
@pytest.mark.parametrize(("bits", "floor"), [(6, 30.0), (4, 17.0), (3, 10.0)])
def test_low_bit_sqnr_floors(bits, floor):
    model = _tiny()
    x = torch.randn(8, 3, 16, 16)
    recipe = QuantRecipe(
        weight_bits=bits,
        act_bits=bits,
        calibrator="mse",
        calibrator_args={"num_bins": 512},
        act_unsigned=True,
    )
    q = quantize_model(model, recipe)
    calibrate(q, lambda m: m(x))
    with torch.no_grad():
        assert _sqnr(model(x), q(x)) > floor
    unsigned = {name: qq.unsigned for name, qq in iter_quantizers(q)}
    assert unsigned["stem.0.input_quantizer"] is False  # normalized image: negative values
    assert unsigned["conv2.input_quantizer"] is True  # after ReLU


def test_calibrate_reports_layers_the_loop_never_ran():
    model = _tiny()
    q = quantize_model(model)
    with pytest.raises(QuantizationError, match=r"saw no data.*fc\.input_quantizer"):
        calibrate(q, lambda m: m.stem(torch.randn(1, 3, 8, 8)))
    assert all(qq.state.value == "disabled" for _, qq in iter_quantizers(q))  # restored


def test_summary_and_state_dict_round_trip():
    model = _tiny()
    x = torch.randn(4, 3, 8, 8)
    q = quantize_model(model)
    calibrate(q, lambda m: m(x))
    rows = quantization_summary(q)
    by_name = {r.name: r for r in rows}
    w = by_name["conv1.weight_quantizer"]
    assert (w.axis, w.channels, w.qmin, w.qmax, w.state) == (0, 16, -127, 127, "quantizing")
    a = by_name["add.shortcut_quantizer"]
    assert (a.axis, a.channels, a.qmin) == (None, 1, -128) and a.amax_max > 0
    assert len(rows) == 11  # 5 layers x (input, weight) + the Add's shortcut
    json.dumps([r.to_dict() for r in rows])
    buf = io.BytesIO()
    torch.save(q.state_dict(), buf)
    buf.seek(0)
    fresh = quantize_model(model)
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), q(x), atol=0, rtol=0)
    assert clip_weights(q) == 0  # max calibration already covers every weight


def test_ptq_on_dct_batches_quantizes_after_the_stem():
    model = create_model("dct_cifar_upsampling").eval()
    g = torch.Generator().manual_seed(0)
    batches = [
        {
            "y": torch.randint(-40, 40, (2, 64, 4, 4), generator=g, dtype=torch.int16),
            "cbcr": torch.randint(-20, 20, (2, 128, 2, 2), generator=g, dtype=torch.int16),
            "qt": torch.randint(1, 40, (2, 3, 64), generator=g).float(),
            "label": torch.zeros(2, dtype=torch.int64),
        }
        for _ in range(3)
    ]
    q = ptq(model, QuantRecipe(), batches, max_batches=2)
    first = next(m for m in q.modules() if isinstance(m, QuantConv2d))
    assert first.input_quantizer.is_calibrated
    assert not any(isinstance(m, QuantConv2d | QuantLinear) for m in q.stem.modules())
    args = model_args(batches[2])
    assert args[0].dtype == torch.float32
    with torch.no_grad():
        assert _sqnr(model(*args), q(*args)) > 20.0
    with pytest.raises(QuantizationError, match="no calibration batches"):
        ptq(model, QuantRecipe(), [])


def test_model_args_forms():
    x = torch.randn(1, 3, 4, 4)
    qt = torch.ones(1, 3, 64)
    assert len(model_args({"x": x, "qt": qt, "label": 0})) == 2
    assert len(model_args({"x": x})) == 1
    assert model_args(x)[0] is x
    with pytest.raises(QuantizationError, match="expected"):
        model_args({"image": x})


# ---------------------------------------------------------------- ONNX export


def test_dynamo_onnx_export_gives_int8_qdq_with_dynamic_batch():
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    from onnx import numpy_helper

    model = _tiny()
    x = torch.randn(2, 3, 8, 8)
    q = quantize_model(model)
    calibrate(q, lambda m: m(x))
    program = torch.onnx.export(
        q,
        (x,),
        dynamo=True,
        opset_version=18,
        external_data=False,
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        verbose=False,
    )
    proto = program.model_proto
    ops = [n.op_type for n in proto.graph.node]
    assert "Max" not in ops and "Min" not in ops and "Clip" not in ops  # no clamp left on weights
    assert ops.count("QuantizeLinear") >= 6 and ops.count("DequantizeLinear") == ops.count("QuantizeLinear")
    consts = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            zp = consts[node.input[2]]
            assert zp.dtype.name == "int8" and not zp.any()
    assert any(consts[n.input[1]].size == 16 for n in proto.graph.node if n.op_type == "QuantizeLinear")
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x5 = torch.randn(5, 3, 8, 8)
    out = sess.run(None, {sess.get_inputs()[0].name: x5.numpy()})[0]
    with torch.no_grad():
        ref = q(x5).numpy()
    assert out.shape == (5, 10)
    # Same function up to rounding: float accumulation order may move a value across a rounding edge.
    assert _sqnr(torch.from_numpy(ref), torch.from_numpy(out)) > 40.0
    assert onnx.checker.check_model(proto) is None


def test_legacy_onnx_export_also_gives_qdq(tmp_path):
    onnx = pytest.importorskip("onnx")
    model = _tiny()
    x = torch.randn(2, 3, 8, 8)
    q = quantize_model(model)
    calibrate(q, lambda m: m(x))
    path = tmp_path / "q.onnx"
    torch.onnx.export(q, (x,), str(path), dynamo=False, opset_version=18)
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ops.count("QuantizeLinear") == ops.count("DequantizeLinear") >= 11


def test_learnable_scales_train_after_calibration():
    model = _tiny()
    x = torch.randn(4, 3, 8, 8)
    q = quantize_model(model, QuantRecipe(weight_bits=4, act_bits=4))
    calibrate(q, lambda m: m(x))
    for _, qq in iter_quantizers(q):
        qq.set_learnable(True)
    q.train()
    q(x).pow(2).mean().backward()
    grads = [qq.amax.grad for _, qq in iter_quantizers(q)]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(int((g != 0).any()) for g in grads) >= len(grads) - 1
    assert q.conv1.weight.grad is not None and q.conv1.weight.grad.abs().sum() > 0


def test_add_inputs_both_quantizes_the_conv_side_of_residual_adds():
    """recipe.add_inputs="both" puts a quantizer on the conv output entering each residual Add too,
    and the recipe round-trips through its dict form."""
    from dctq.calibration.quant.model import quantize_model
    from dctq.calibration.quant.modules import QuantResidualAdd
    from dctq.calibration.quant.recipe import QuantRecipe
    from dctq.common.errors import QuantizationError
    from dctq.models.registry import create_model

    model = create_model("resnet20", num_classes=4).eval()
    residual = quantize_model(model, QuantRecipe())
    both = quantize_model(model, QuantRecipe(add_inputs="both"))
    adds_r = [m for m in residual.modules() if isinstance(m, QuantResidualAdd)]
    adds_b = [m for m in both.modules() if isinstance(m, QuantResidualAdd)]
    assert adds_r and len(adds_r) == len(adds_b)
    assert all(a.input_quantizer is None for a in adds_r)
    assert all(a.input_quantizer is not None for a in adds_b)
    recipe = QuantRecipe(add_inputs="both")
    assert QuantRecipe.from_dict(recipe.to_dict()) == recipe
    with pytest.raises(QuantizationError, match="add_inputs"):
        QuantRecipe(add_inputs="conv")
