"""QAT quantizers: PAMS-style learnable clip, asymmetric grids, low-bit grids that export exactly,
per-channel offsets, and their recipes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dctq.calibration.calibrators.max import MaxCalibrator
from dctq.calibration.quant.model import calibrate, iter_quantizers, quantize_model
from dctq.calibration.quant.offsets import OffsetQuantizer
from dctq.calibration.quant.quantizer import QuantState, TensorQuantizer
from dctq.calibration.quant.recipe import LayerRule, QuantRecipe, build_recipe, with_task_rules
from dctq.common.errors import QuantizationError


def _calibrated(x: torch.Tensor, **kwargs) -> TensorQuantizer:
    q = TensorQuantizer(calibrator=MaxCalibrator(kwargs.get("bits", 8)), label="q", **kwargs)
    q.start_calibration()
    q(x)
    q.finish_calibration()
    return q


def test_pams_gradient_reaches_the_range_only_from_clipped_elements():
    q = _calibrated(torch.tensor([-1.0, 1.0]), bits=4, narrow_range=True)
    q.set_learnable(True, "pams")
    x = torch.tensor([-3.0, -0.4, 0.3, 0.95, 2.0], requires_grad=True)
    out = q(x)
    out.sum().backward()
    # inside: straight-through 1; outside: 0 for x, sign(x) for the range bound amax (lo = -amax here)
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]
    assert float(q.amax.grad) == pytest.approx(-1.0 + 1.0)  # one element clipped below, one above
    assert torch.allclose(out.detach(), q.eval()(x.detach()))  # the same numbers as the eval/export path


def test_asymmetric_grid_spans_the_observed_interval_and_keeps_zero_exact():
    x = torch.linspace(-0.2, 1.8, 101)
    q = _calibrated(x, bits=3, asymmetric=True)
    lo, hi = q.interval()
    assert q.qmin == 0 and q.qmax == 7
    step = 2.0 / 7
    # the span is the observed one; the zero point is rounded onto the grid, which shifts the interval
    assert float(hi - lo) == pytest.approx(2.0) and float(lo) == pytest.approx(-step)
    out = q(x)
    assert len(torch.unique(out)) <= 8 and 0.0 in out.tolist()
    inside = (x >= lo) & (x <= hi)
    assert (out - x)[inside].abs().max() <= step / 2 + 1e-6
    with pytest.raises(QuantizationError, match="below 8 bits"):
        TensorQuantizer(8, asymmetric=True)


@pytest.mark.parametrize(
    "kwargs", [{"bits": 4}, {"bits": 2}, {"bits": 3, "unsigned": True}, {"bits": 4, "asymmetric": True}]
)
def test_low_bit_grids_go_through_the_int8_ops_unchanged(kwargs):
    """Below 8 bits the quantizer clamps to its grid and calls the full int8/uint8 op (what exporters
    accept); the result equals rounding on the low-bit grid directly."""
    x = torch.randn(4000) * 2 + (1 if kwargs.get("unsigned") else 0)
    x = x.clamp_min(0) if kwargs.get("unsigned") else x
    q = _calibrated(x, narrow_range=False, **kwargs)
    out = q(x)
    scale, zero, _ = q._grid(x, q.amax.detach())
    direct = (torch.clamp(torch.round(x / scale) + zero, q.qmin, q.qmax) - zero) * scale
    assert torch.allclose(out, direct, atol=1e-6)
    assert len(torch.unique(out)) <= q.qmax - q.qmin + 1


def test_offsets_normalise_around_the_quantizer_and_vanish_when_disabled():
    q = _calibrated(torch.tensor([-1.0, 1.0]), bits=4, narrow_range=False)
    off = OffsetQuantizer(q, 2, "both")
    off.set_offsets(torch.tensor([5.0, -3.0]), torch.tensor([2.0, 0.5]))
    x = torch.tensor([[[5.5]], [[-3.2]]])[None]  # [1, 2, 1, 1]
    assert torch.allclose(off.normalize(x).flatten(), torch.tensor([0.25, -0.4]))
    out = off(x)
    assert torch.allclose(
        out,
        q(off.normalize(x)) * torch.tensor([2.0, 0.5]).reshape(1, 2, 1, 1)
        + torch.tensor([5.0, -3.0]).reshape(1, 2, 1, 1),
    )
    q.state = QuantState.DISABLED
    assert torch.equal(off(x), x)


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, 4, 3, padding=1)
        self.body = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))
        self.tail = nn.Sequential(nn.Conv2d(4, 3, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.body(self.head(x)))


def test_recipes_with_offsets_and_asymmetry_rebuild_the_same_structure():
    recipe = with_task_rules(build_recipe(bits="w4a4", asymmetric=True), "sr")
    recipe = QuantRecipe.from_dict({**recipe.to_dict(), "offsets": [["body.2", "both"], ["body.0", "scale"]]})
    assert recipe.offsets == (("body.2", "both"), ("body.0", "scale")) and recipe.act_asymmetric
    assert QuantRecipe.from_dict(recipe.to_dict()) == recipe
    qmodel = quantize_model(_Net(), recipe)
    names = [n for n, _ in iter_quantizers(qmodel)]
    assert not any(n.startswith(("head", "tail")) for n in names)  # the SR rules keep them float
    assert isinstance(qmodel.body[2].input_quantizer, OffsetQuantizer)
    calibrate(qmodel, lambda m: m(torch.randn(2, 3, 8, 8)))
    again = quantize_model(_Net(), recipe)
    again.load_state_dict(qmodel.state_dict())
    x = torch.randn(1, 3, 8, 8)
    assert torch.equal(again.eval()(x), qmodel.eval()(x))
    with pytest.raises(QuantizationError, match="needs act_bits < 8"):
        QuantRecipe(act_asymmetric=True)
    with pytest.raises(QuantizationError, match="no activation quantizer"):
        quantize_model(
            _Net(), QuantRecipe(rules=(LayerRule("body.*", "skip"),), offsets=(("body.0", "shift"),))
        )


class _One(nn.Module):
    def __init__(self, q: TensorQuantizer) -> None:
        super().__init__()
        self.q = q

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.q(x)


@pytest.mark.parametrize(
    "kwargs",
    [{"bits": 2, "narrow_range": False}, {"bits": 4, "asymmetric": True}],  # int8 and uint8 Q/DQ
)
def test_one_low_bit_quantizer_is_bit_exact_in_onnx_runtime(kwargs, tmp_path):
    """The exported Clip -> QuantizeLinear -> DequantizeLinear computes the trained grid exactly: ONNX
    Runtime and PyTorch agree on every value (whole networks then differ only where float accumulation
    order moves a value across a rounding edge)."""
    ort = pytest.importorskip("onnxruntime")
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, 16, 16, generator=gen) * 2 + (1 if kwargs.get("unsigned") else 0)
    x = x.clamp_min(0) if kwargs.get("unsigned") else x
    q = _calibrated(x, **kwargs)
    path = tmp_path / "q.onnx"
    program = torch.onnx.export(_One(q).eval(), (x,), dynamo=True, input_names=["x"], output_names=["y"])
    program.save(str(path))
    ops = [n.op_type for n in program.model_proto.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    probe = torch.randn(1, 3, 16, 16, generator=gen) * 3
    got = session.run(None, {"x": probe.numpy()})[0]
    assert np.array_equal(got, q(probe).numpy())
