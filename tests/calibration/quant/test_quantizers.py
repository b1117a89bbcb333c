"""TensorQuantizer: grid, states, gradients (STE, LSQ), checkpoints; quantized layers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dctq.calibration.calibrators.max import MaxCalibrator
from dctq.calibration.quant.modules import QuantConv2d, QuantConvTranspose2d, QuantLinear, QuantResidualAdd
from dctq.calibration.quant.quantizer import QuantState, TensorQuantizer
from dctq.common.errors import QuantizationError
from dctq.models.resnet import ResidualAdd


def _quantizer(bits=8, axis=None, amax=2.0, **kw) -> TensorQuantizer:
    q = TensorQuantizer(bits, axis, **kw)
    q.set_amax(torch.as_tensor(amax))
    return q


def _reference(x: torch.Tensor, amax: torch.Tensor, qmin: int, qmax: int) -> torch.Tensor:
    # x * (1/s): the rounding torch's fake-quant kernels use (x / s differs on ~1e-7 of ties)
    s = amax / qmax
    return torch.clamp(torch.round(x * (1.0 / s)), qmin, qmax) * s


@pytest.mark.parametrize(
    ("bits", "narrow", "unsigned", "qmin", "qmax"),
    [
        (8, True, False, -127, 127),
        (8, False, False, -128, 127),
        (4, True, False, -7, 7),
        (3, False, False, -4, 3),
        (4, True, True, 0, 15),
        (2, True, False, -1, 1),
    ],
)
def test_grid_values_are_multiples_of_scale_within_range(bits, narrow, unsigned, qmin, qmax):
    q = _quantizer(bits, amax=3.0, narrow_range=narrow, unsigned=unsigned)
    assert (q.qmin, q.qmax) == (qmin, qmax)
    x = torch.linspace(-6, 6, 2001)
    y = q(x)
    k = y / (3.0 / qmax)
    torch.testing.assert_close(k, k.round(), atol=1e-4, rtol=0)
    assert int(k.round().min()) == qmin and int(k.round().max()) == qmax
    torch.testing.assert_close(y, _reference(x, torch.tensor(3.0), qmin, qmax), atol=1e-6, rtol=0)


def test_per_channel_uses_each_channels_scale():
    w = torch.randn(4, 3, 3, 3)
    amax = w.abs().amax(dim=(1, 2, 3))
    q = _quantizer(8, 0, amax=amax)
    y = q(w)
    for c in range(4):
        k = y[c] / (amax[c] / 127)
        torch.testing.assert_close(k, k.round(), atol=1e-3, rtol=0)
        assert k.abs().max().round() == 127  # max calibration puts the largest weight on the grid's end
    with pytest.raises(QuantizationError, match="channels"):
        q(torch.randn(5, 3))


def test_ste_passes_gradient_inside_range_only():
    q = _quantizer(8, amax=1.0)
    x = torch.tensor([-3.0, -0.5, 0.0, 0.3, 0.999, 2.0], requires_grad=True)
    q(x).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 0.0]
    qc = _quantizer(4, 0, amax=torch.tensor([1.0, 10.0]))
    w = torch.tensor([[2.0, 0.5], [2.0, 0.5]], requires_grad=True)
    qc(w).sum().backward()
    assert w.grad.tolist() == [[0.0, 1.0], [1.0, 1.0]]


def test_learnable_amax_gets_the_lsq_gradient():
    q = _quantizer(4, amax=1.0, learnable=True)
    assert isinstance(q.amax, nn.Parameter)
    x = torch.tensor([[-2.0, -0.3, 0.1, 0.45, 0.8, 3.0]])
    q(x).sum().backward()
    s, qmax = 1.0 / 7, 7
    v = (x / s).clamp(-7, 7)
    # d(s * round(clamp(x/s)))/ds = round(v) - v inside, the clamp bound outside; LSQ scales it by g.
    g = 1.0 / math.sqrt(x.numel() * qmax)
    expected = float((torch.round(v) - v * ((x / s).abs() < 7)).sum()) * g / qmax
    assert q.amax.grad is not None
    assert q.amax.grad.item() == pytest.approx(expected, rel=1e-5)
    # Same forward as the op path (eval / no grad).
    with torch.no_grad():
        torch.testing.assert_close(q(x), _quantizer(4, amax=1.0)(x))


def test_set_learnable_converts_buffer_and_back():
    q = _quantizer(8, amax=2.0)
    q.set_learnable(True)
    assert isinstance(q.amax, nn.Parameter) and q.amax.item() == 2.0
    q.set_learnable(False)
    assert not isinstance(q.amax, nn.Parameter) and "amax" in dict(q.named_buffers())


def test_states_disabled_calibrating_quantizing():
    q = TensorQuantizer(8, None, calibrator=MaxCalibrator())
    x = torch.randn(100)
    assert q(x) is x  # disabled
    q.start_calibration()
    assert q.state is QuantState.CALIBRATING
    assert q(x) is x and torch.equal(q(2 * x), 2 * x)  # calibrating observes, passes the values on
    amax = q.finish_calibration()
    assert amax.item() == pytest.approx(2 * x.abs().max().item())
    assert q.state is QuantState.QUANTIZING and not torch.equal(q(x), x)


def test_uncalibrated_and_silent_quantizers_raise():
    q = TensorQuantizer(8, None, calibrator=MaxCalibrator(), label="layer1.conv1.input_quantizer")
    q.state = QuantState.QUANTIZING
    with pytest.raises(QuantizationError, match=r"layer1\.conv1\.input_quantizer has no amax"):
        q(torch.ones(3))
    q.start_calibration()
    with pytest.raises(QuantizationError, match="observed no data"):
        q.finish_calibration()


def test_invalid_grids_raise():
    with pytest.raises(QuantizationError, match=r"2\.\.8"):
        TensorQuantizer(9)
    with pytest.raises(QuantizationError, match="unsigned"):
        TensorQuantizer(8, unsigned=True)


def test_auto_unsigned_follows_the_sign_of_calibration_data():
    for data, unsigned in ((torch.rand(50), True), (torch.randn(50), False)):
        q = TensorQuantizer(4, None, unsigned=None, calibrator=MaxCalibrator(4))
        q.start_calibration()
        q(data)
        q.finish_calibration()
        assert q.unsigned is unsigned
        assert q.qmin == (0 if unsigned else -7)


def test_state_dict_round_trip_restores_amax_grid_and_state():
    q = TensorQuantizer(4, 0, unsigned=None, calibrator=MaxCalibrator(4, 0))
    q.start_calibration()
    q(torch.rand(3, 5))
    q.finish_calibration()
    fresh = TensorQuantizer(4, 0, unsigned=None)
    fresh.load_state_dict(q.state_dict())
    assert fresh.state is QuantState.QUANTIZING and fresh.unsigned
    x = torch.rand(3, 5)
    torch.testing.assert_close(fresh(x), q(x), rtol=0, atol=0)
    with pytest.raises(QuantizationError, match="calibrated for 4 bits"):
        TensorQuantizer(8, 0).load_state_dict(q.state_dict())


def test_reduced_precision_inputs_keep_their_dtype():
    q = _quantizer(8, amax=1.0)
    x = torch.randn(10).to(torch.bfloat16)
    assert q(x).dtype == torch.bfloat16


def _calibrated(layer_q: nn.Module, *inputs: torch.Tensor) -> nn.Module:
    for q in layer_q.modules():
        if isinstance(q, TensorQuantizer):
            q.start_calibration()
    layer_q(*inputs)
    for q in layer_q.modules():
        if isinstance(q, TensorQuantizer):
            q.finish_calibration()
    return layer_q


def _pair(bits: int = 8, axis: int = 0) -> dict[str, TensorQuantizer]:
    return {
        "input_quantizer": TensorQuantizer(bits, None, narrow_range=False, calibrator=MaxCalibrator(bits)),
        "weight_quantizer": TensorQuantizer(bits, axis, calibrator=MaxCalibrator(bits, axis), is_weight=True),
    }


def test_quant_layers_keep_parameters_and_match_manual_fake_quant():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1, groups=1)
    qconv = QuantConv2d.from_float(conv, **_pair())
    assert isinstance(qconv, nn.Conv2d) and qconv.weight is conv.weight
    assert set(conv.state_dict()) <= set(qconv.state_dict())
    x = torch.randn(2, 3, 8, 8)
    qconv.input_quantizer.start_calibration()
    qconv(x)
    qconv.input_quantizer.finish_calibration()
    qconv.weight_quantizer.start_calibration()
    qconv.weight_quantizer(qconv.weight)
    qconv.weight_quantizer.finish_calibration()
    xa, wa = x.abs().max(), conv.weight.detach().abs().amax(dim=(1, 2, 3))
    expected = nn.functional.conv2d(
        _reference(x, xa, -128, 127),
        _reference(conv.weight.detach(), wa.view(-1, 1, 1, 1), -127, 127),
        conv.bias,
        padding=1,
    )
    torch.testing.assert_close(qconv(x), expected, atol=1e-5, rtol=1e-5)


def test_quant_linear_transpose_and_add():
    torch.manual_seed(1)
    lin = QuantLinear.from_float(nn.Linear(6, 3), **_pair())
    assert lin.weight_quantizer.axis == 0
    _calibrated(lin, torch.randn(4, 6))
    assert lin(torch.randn(4, 6)).shape == (4, 3)
    deconv = QuantConvTranspose2d.from_float(nn.ConvTranspose2d(4, 5, 2, stride=2), **_pair(axis=1))
    _calibrated(deconv, torch.randn(1, 4, 3, 3))
    deconv.weight_quantizer.start_calibration()
    deconv.weight_quantizer(deconv.weight)
    assert deconv.weight_quantizer.finish_calibration().shape == (5,)
    assert deconv(torch.randn(1, 4, 3, 3)).shape == (1, 5, 6, 6)
    add = QuantResidualAdd.from_float(
        ResidualAdd(),
        shortcut_quantizer=TensorQuantizer(8, None, narrow_range=False, calibrator=MaxCalibrator()),
    )
    a, b = torch.randn(2, 4), torch.randn(2, 4)
    _calibrated(add, a, b)
    out = add(a, b)
    torch.testing.assert_close(out - a, _reference(b, b.abs().max(), -128, 127))


def test_quant_conv_transpose_quantizes_with_an_output_size_too():
    torch.manual_seed(2)
    float_layer = nn.ConvTranspose2d(4, 5, 3, stride=2, padding=1)
    deconv = QuantConvTranspose2d.from_float(float_layer, **_pair(bits=4, axis=1))
    x = torch.randn(2, 4, 3, 3)
    deconv.input_quantizer.start_calibration()
    deconv.weight_quantizer.start_calibration()
    deconv(x)
    deconv.input_quantizer.finish_calibration()
    deconv.weight_quantizer.finish_calibration()
    # output_size picks output_padding 1; the quantizers must run on that path as on the plain one
    out = deconv(x, output_size=[6, 6])
    expected = nn.functional.conv_transpose2d(
        deconv.input_quantizer(x), deconv.weight_quantizer(deconv.weight), deconv.bias, 2, 1, 1
    )
    assert out.shape == (2, 5, 6, 6)
    torch.testing.assert_close(out, expected)
    assert not torch.allclose(out, float_layer(x, output_size=[6, 6]), atol=1e-3)
