"""Conv+BN folding: same eval-mode function, BN replaced, the right pairs only."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dctq.calibration.quant.fold import find_conv_bn_pairs, fold_conv_bn
from dctq.models.qabn import QABatchNorm2d, apply_qabn
from dctq.models.registry import create_model


def _randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.2)
            if m.affine:
                m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)
    return model.eval()


class Block(nn.Module):
    """conv1/bn1 as attributes, a conv with bias, a BN without affine, and a BN not after a conv."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=True)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(8, affine=False)
        self.pre = nn.BatchNorm2d(8)  # applied to a ReLU output: must stay
        self.seq = nn.Sequential(
            nn.Conv2d(8, 4, 3, groups=4, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.pre(torch.relu(self.bn2(self.conv2(x))))
        return self.seq(x)


class Shared(nn.Module):
    """The conv output feeds the BN and a second branch: folding would change the branch."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + y


class Untraceable(nn.Module):
    """Data-dependent control flow stops torch.fx; the Sequential fallback still folds."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
        self.bn_alone = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return self.bn_alone(y) if bool(y.sum() > 0) else y


def _assert_same(a: torch.Tensor, b: torch.Tensor) -> None:
    scale = max(1.0, a.abs().max().item())
    assert (a - b).abs().max().item() <= 1e-5 * scale


def test_fold_tiny_block_matches_and_replaces_bn():
    torch.manual_seed(0)
    model = _randomize_bn(Block())
    pairs = find_conv_bn_pairs(model)
    assert pairs == [("conv1", "bn1"), ("conv2", "bn2"), ("seq.0", "seq.1")]
    folded = fold_conv_bn(model)
    assert isinstance(folded.bn1, nn.Identity) and isinstance(folded.seq[1], nn.Identity)
    assert isinstance(folded.pre, nn.BatchNorm2d)  # not after a conv
    assert isinstance(model.bn1, nn.BatchNorm2d)  # original untouched
    assert folded.conv2.bias is not None
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        _assert_same(model(x), folded(x))


def test_conv_with_a_second_user_is_not_folded():
    model = _randomize_bn(Shared())
    assert find_conv_bn_pairs(model) == []
    x = torch.randn(1, 3, 6, 6)
    with torch.no_grad():
        _assert_same(model(x), fold_conv_bn(model)(x))


def test_untraceable_model_falls_back_to_sequential_pairs():
    model = _randomize_bn(Untraceable())
    assert find_conv_bn_pairs(model) == [("body.0", "body.1")]
    folded = fold_conv_bn(model)
    assert isinstance(folded.bn_alone, nn.BatchNorm2d)
    x = torch.randn(1, 3, 6, 6)
    with torch.no_grad():
        _assert_same(model(x), folded(x))


def _inputs(model: nn.Module) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(1)
    if model.input_kind == "dct":
        return (
            torch.randint(-30, 30, (2, 64, 4, 4), generator=g).float(),
            torch.randint(-30, 30, (2, 128, 2, 2), generator=g).float(),
            torch.randint(1, 30, (2, 3, 64), generator=g).float(),
        )
    return (torch.randn(2, 3, 32, 32, generator=g),)


@pytest.mark.parametrize("name", ["resnet20", "dct_cifar_upsampling"])
def test_fold_registered_models(name):
    model = _randomize_bn(create_model(name))
    n_bn = sum(type(m) is nn.BatchNorm2d for m in model.modules())
    folded = fold_conv_bn(model)
    assert len(find_conv_bn_pairs(model)) == n_bn  # every BN of these nets follows a conv
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    args = _inputs(model)
    with torch.no_grad():
        _assert_same(model(*args), folded(*args))


def test_qabn_layers_are_left_alone():
    model = apply_qabn(_randomize_bn(create_model("resnet20")))
    folded = fold_conv_bn(model)
    assert find_conv_bn_pairs(model) == []
    assert sum(isinstance(m, QABatchNorm2d) for m in folded.modules()) == 21
    x = torch.randn(2, 3, 32, 32)
    qt = torch.randint(1, 60, (2, 3, 64)).float()
    with torch.no_grad():
        _assert_same(model.eval()(x, qt), folded.eval()(x, qt))
