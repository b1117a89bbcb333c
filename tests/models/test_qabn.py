"""QSAM's QABN: branch routing and mixing, model conversion, the qt hook, export, and the meta step."""

from __future__ import annotations

import copy
import importlib.util

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dctq.calibration.qsam.episode import meta_step
from dctq.calibration.qsam.qac import qac_weighted_loss
from dctq.common.errors import ModelError
from dctq.jpeg.quality import ijg_qt
from dctq.models.qabn import (
    QSAM_BASE_QUALITIES,
    QABatchNorm2d,
    QuantTableMixer,
    apply_qabn,
    is_qabn,
    qabn_mixing,
    qabn_routing,
)
from dctq.models.qabn_routing import chunk_branch_index

K = 4


class TinyRgb(nn.Module):
    """conv-BN-ReLU-conv-BN-ReLU-pool-linear with the RGB convention forward(x, qt=None)."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1, bias=False),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.fc = nn.Linear(8, classes)

    def forward(self, x: torch.Tensor, qt: torch.Tensor | None = None) -> torch.Tensor:
        return self.fc(self.body(x))


class TinyDct(nn.Module):
    """The DCT convention forward(y, cbcr, qt): qt is the third positional argument."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(64 + 128, 8, 1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 2)

    def forward(self, y: torch.Tensor, cbcr: torch.Tensor, qt: torch.Tensor) -> torch.Tensor:
        x = torch.cat([y * qt[:, 0, :, None, None], F.interpolate(cbcr, scale_factor=2)], dim=1)
        return self.fc(F.relu(self.bn(self.conv(x))).mean(dim=(2, 3)))


def _randomize_bn(model: nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm branch its own statistics and affine, as after training."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g))
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=g))


def _x(n: int = 8, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))


def test_mixing_is_weighted_sum_of_eval_branches_in_any_mode() -> None:
    layer = QABatchNorm2d(6, K)
    _randomize_bn(layer)
    x = torch.randn(5, 6, 4, 4)
    w = torch.randn(5, K)
    expected = sum(w[:, k, None, None, None] * layer.branches[k].eval()(x) for k in range(K))
    torch.testing.assert_close(layer.mix(x, w), expected)
    stats = [b.running_mean.clone() for b in layer.branches]
    layer.train()
    torch.testing.assert_close(layer.mix(x, w), expected)  # running stats, not batch stats
    for b, s in zip(layer.branches, stats, strict=True):
        torch.testing.assert_close(b.running_mean, s)
    with pytest.raises(ModelError, match=r"weights \[N, 4\]"):
        layer.mix(x, w[:, :3])


def test_hard_routing_uses_each_group_batch_stats() -> None:
    layer = QABatchNorm2d(6, K).train()
    ref = copy.deepcopy(layer)
    x = torch.randn(4 * K, 6, 4, 4)
    out = layer.route(x, chunk_branch_index(4, K))
    for k in range(K):
        chunk = x[4 * k : 4 * (k + 1)]
        torch.testing.assert_close(out[4 * k : 4 * (k + 1)], ref.branches[k](chunk))
        torch.testing.assert_close(layer.branches[k].running_mean, ref.branches[k].running_mean)
    # Any per-sample order gives the same per-sample result as the grouped batch.
    perm = torch.randperm(4 * K, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(layer.route(x[perm], chunk_branch_index(4, K)[perm]), out[perm])
    with pytest.raises(ModelError, match=r"0\.\.3"):
        layer.route(x, torch.full((4 * K,), K))
    with pytest.raises(ModelError, match="batch of 16 samples but a branch_index of 3"):
        layer.route(x, torch.tensor([0, 1, 2]))


def test_mixer_reads_y_and_cb_tables_and_sums_to_one() -> None:
    torch.manual_seed(0)
    mixer = QuantTableMixer(K)
    qt = ijg_qt([95, 50, 10])
    w = mixer(qt)
    assert w.shape == (3, K)
    torch.testing.assert_close(w.sum(dim=1), torch.ones(3))
    qt_cr = qt.clone()
    qt_cr[:, 2] = 1.0
    torch.testing.assert_close(mixer(qt_cr), w)  # Cr is not an input
    qt_cb = qt.clone()
    qt_cb[:, 1, 7] += 40.0
    assert not torch.allclose(mixer(qt_cb), w)
    nn.init.zeros_(mixer.net[4].weight)
    nn.init.zeros_(mixer.net[4].bias)  # raw sum exactly 0: guarded, finite
    assert torch.isfinite(mixer(qt)).all()
    with pytest.raises(ModelError, match=r"qt \[N, 3, 64\]"):
        mixer(torch.ones(3, 64))


def test_apply_qabn_keeps_function_and_reads_qt() -> None:
    torch.manual_seed(0)
    plain = TinyRgb().eval()
    _randomize_bn(plain)
    x, qt = _x(), ijg_qt([90, 60, 30, 10] * 2)
    expected = plain(x)
    model = apply_qabn(copy.deepcopy(plain), K)
    assert is_qabn(model) and not is_qabn(plain) and model.qabn_num_branches == K
    assert QSAM_BASE_QUALITIES == (90, 60, 30, 10)
    assert sum(isinstance(m, QABatchNorm2d) for m in model.modules()) == 2
    assert "body.1.branches.3.running_var" in model.state_dict()
    assert "qabn_mixer.net.4.weight" in model.state_dict()
    torch.testing.assert_close(model(x, qt), expected)  # positional qt
    torch.testing.assert_close(model(x, qt=qt), expected)  # keyword qt
    # Distinct branches: hook output = explicit mixing with the mixer's weights.
    _randomize_bn(model, seed=3)
    with qabn_mixing(model, model.qabn_mixer(qt)):
        mixed = model(x, qt)
    torch.testing.assert_close(model(x, qt=qt), mixed)
    with pytest.raises(ModelError, match="needs the quant tables"):
        model(x)
    with pytest.raises(ModelError, match="already has QABN"):
        apply_qabn(model)


def test_dct_convention_third_positional_qt() -> None:
    torch.manual_seed(0)
    model = TinyDct().eval()
    _randomize_bn(model)
    y, cbcr, qt = torch.randn(3, 64, 4, 4), torch.randn(3, 128, 2, 2), ijg_qt([90, 50, 10])
    expected = model(y, cbcr, qt)
    apply_qabn(model)
    torch.testing.assert_close(model(y, cbcr, qt), expected)
    torch.testing.assert_close(model(y, cbcr, qt=qt), expected)
    # meta_step takes the forward arguments before qt as a tuple.
    opt = torch.optim.SGD(model.qabn_mixer.parameters(), lr=1e-3)
    labels = torch.tensor([0, 1, 0])
    losses = meta_step(model, ((y, cbcr), labels, qt, torch.tensor([0, 1, 3])), ((y, cbcr), labels, qt), opt)
    assert all(p.grad is not None for p in model.qabn_mixer.parameters())
    assert losses.base > 0 and losses.train > 0 and losses.test > 0


def test_routing_context_and_deepcopy_independence() -> None:
    torch.manual_seed(0)
    model = apply_qabn(TinyRgb(), K)
    _randomize_bn(model)
    model.eval()
    x = _x(2 * K)
    index = chunk_branch_index(2, K)
    with qabn_routing(model, index):
        routed = model(x)  # RGB model: no qt needed under hard routing
    # In eval mode hard routing = mixing with one-hot weights.
    with qabn_mixing(model, F.one_hot(index, K).float()):
        torch.testing.assert_close(model(x), routed)
    with pytest.raises(ModelError, match="needs the quant tables"):
        model(x)  # routing was lifted on exit
    twin = copy.deepcopy(model)
    with qabn_routing(twin, torch.zeros(2 * K, dtype=torch.long)):
        twin(x)
        with pytest.raises(ModelError):
            model(x)  # the original's state is not the copy's


def test_apply_qabn_rejects_models_it_cannot_convert() -> None:
    class NoQt(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bn = nn.BatchNorm2d(2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.bn(x)

    with pytest.raises(ModelError, match="no `qt` argument"):
        apply_qabn(NoQt())
    with pytest.raises(ModelError, match="no BatchNorm2d"):
        apply_qabn(TinyRgb(), exclude=("body.*",))
    model = apply_qabn(TinyRgb(), exclude=("body.4",))
    assert isinstance(model.body[4], nn.BatchNorm2d) and isinstance(model.body[1], QABatchNorm2d)


def test_torch_export_in_mixing_mode_with_dynamic_batch() -> None:
    torch.manual_seed(0)
    model = apply_qabn(TinyRgb(), K)
    _randomize_bn(model)
    model.eval()
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(
        model, (_x(4), ijg_qt([95, 70, 40, 10])), dynamic_shapes=({0: batch}, {0: batch})
    )
    x, qt = _x(6, seed=5), ijg_qt([95, 85, 70, 40, 20, 10])
    torch.testing.assert_close(program.module()(x, qt), model(x, qt))


@pytest.mark.skipif(
    importlib.util.find_spec("onnxscript") is None or importlib.util.find_spec("onnxruntime") is None,
    reason="onnxscript/onnxruntime not installed (pip install 'dctq[onnx]')",
)
def test_onnx_dynamo_export_matches_onnxruntime(tmp_path) -> None:
    import onnxruntime as ort

    torch.manual_seed(0)
    model = apply_qabn(TinyRgb(), K)
    _randomize_bn(model)
    model.eval()
    x, qt = _x(4), ijg_qt([95, 70, 40, 10])
    path = tmp_path / "qabn.onnx"
    torch.onnx.export(model, (x, qt), str(path), dynamo=True, external_data=False, verbose=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    (out,) = session.run(None, dict(zip(names, (x.numpy(), qt.numpy()), strict=True)))
    torch.testing.assert_close(torch.from_numpy(out), model(x, qt), rtol=1e-4, atol=1e-4)


def test_meta_step_trains_only_the_mixer() -> None:
    torch.manual_seed(0)
    model = apply_qabn(TinyRgb(), K)
    _randomize_bn(model)
    model.train()
    frozen = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("qabn_mixer")}
    mixer_before = {k: v.clone() for k, v in model.qabn_mixer.state_dict().items()}
    opt = torch.optim.Adam(model.qabn_mixer.parameters(), lr=4e-3)
    x_tr, x_te = _x(8, seed=1), _x(8, seed=2)
    y_tr, y_te = torch.randint(0, 3, (8,)), torch.randint(0, 3, (8,))
    qt_tr, qt_te = ijg_qt([60] * 8), ijg_qt([50] * 8)
    totals = []
    for _ in range(8):
        losses = meta_step(model, (x_tr, y_tr, qt_tr, 1), (x_te, y_te, qt_te), opt, loss_fn=qac_weighted_loss)
        totals.append(losses.total)
        assert losses.total == pytest.approx(losses.train + losses.test + losses.base, rel=1e-5)
    assert totals[-1] < totals[0]
    assert model.training  # mode restored
    for k, v in model.state_dict().items():
        if k in frozen:
            torch.testing.assert_close(v, frozen[k], rtol=0, atol=0)  # weights and running stats
    assert all(p.grad is None for n, p in model.named_parameters() if not n.startswith("qabn_mixer"))
    assert all(p.grad is not None for p in model.qabn_mixer.parameters())
    changed = [not torch.equal(v, mixer_before[k]) for k, v in model.qabn_mixer.state_dict().items()]
    assert all(changed)


def test_meta_step_gradient_is_second_order() -> None:
    """The mixer's gradient equals a finite difference of the whole episode's total loss, i.e. it
    includes the derivative through the inner update (create_graph=True), not a first-order shortcut."""
    torch.manual_seed(0)
    model = apply_qabn(TinyRgb(), K).double()
    _randomize_bn(model)
    x, y = _x(4).double(), torch.tensor([0, 1, 2, 0])
    qt_tr, qt_te = ijg_qt([90] * 4).double(), ijg_qt([70] * 4).double()
    opt = torch.optim.SGD(model.qabn_mixer.parameters(), lr=0.0)

    def total() -> float:
        return meta_step(model, (x, y, qt_tr, 0), (x, y, qt_te), opt, inner_lr=0.5).total

    total()
    params = list(model.qabn_mixer.parameters())
    grads = [p.grad.clone() for p in params]
    direction = [torch.randn_like(p) for p in params]
    eps = 1e-6
    values = []
    for sign in (1.0, -1.0):
        with torch.no_grad():
            for p, d in zip(params, direction, strict=True):
                p.add_(sign * eps * d)
        values.append(total())
        with torch.no_grad():
            for p, d in zip(params, direction, strict=True):
                p.sub_(sign * eps * d)
    numeric = (values[0] - values[1]) / (2 * eps)
    analytic = sum(float((g * d).sum()) for g, d in zip(grads, direction, strict=True))
    assert analytic == pytest.approx(numeric, rel=1e-5)


@pytest.mark.parametrize("name", ["resnet20", "dct_cifar_upsampling"])
def test_registry_models_convert_without_changing_function(name: str) -> None:
    registry = pytest.importorskip("dctq.models.registry", reason="models/registry.py not written yet")
    if not registry.is_model(name):
        pytest.skip(f"{name} is not registered")
    torch.manual_seed(0)
    model = registry.create_model(name).eval()
    _randomize_bn(model)
    args = _resnet_args(model)
    expected = model(*args)
    apply_qabn(model, K)
    assert sum(isinstance(m, QABatchNorm2d) for m in model.modules()) > 5
    # Mixing computes each BN as x * scale + shift: equal up to float32 rounding of large activations.
    scale = float(expected.detach().abs().max())
    torch.testing.assert_close(model(*args), expected, rtol=1e-4, atol=1e-5 * scale)


def _resnet_args(model: nn.Module) -> tuple[torch.Tensor, ...]:
    import inspect

    names = list(inspect.signature(model.forward).parameters)
    qt = ijg_qt([90, 10])
    if names[:3] == ["y", "cbcr", "qt"]:
        return torch.randn(2, 64, 4, 4), torch.randn(2, 128, 2, 2), qt
    return torch.randn(2, 3, 32, 32), qt
