"""BatchNorm statistics re-estimated on other batches: the averages of the per-batch statistics, nothing else."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dctq.calibration.bn_stats import batch_norms, reestimate_bn
from dctq.common.errors import ModelError


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(4, 2, 1), nn.BatchNorm2d(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.bn(self.conv(x)))


def test_statistics_are_the_averages_of_the_batches_and_nothing_else_changes():
    torch.manual_seed(0)
    model = _Net().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batches = [{"x": torch.randn(5, 3, 6, 6) * (i + 1) + i} for i in range(3)]
    adapted = reestimate_bn(model, batches)

    with torch.no_grad():
        features = [model.conv(b["x"]) for b in batches]
    mean = torch.stack([f.mean(dim=(0, 2, 3)) for f in features]).mean(0)
    var = torch.stack([f.var(dim=(0, 2, 3), unbiased=True) for f in features]).mean(0)
    torch.testing.assert_close(adapted.bn.running_mean, mean)
    torch.testing.assert_close(adapted.bn.running_var, var)
    assert not adapted.training and adapted.bn.momentum == model.bn.momentum == 0.1
    for name, value in adapted.state_dict().items():
        if "running" not in name and "num_batches" not in name:
            assert torch.equal(value, before[name]), name
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # the input is untouched
    assert len(batch_norms(adapted)) == 2


def test_no_batchnorm_or_no_batches_is_an_error():
    with pytest.raises(ModelError, match="no BatchNorm layers"):
        reestimate_bn(nn.Conv2d(3, 3, 1), [])
    with pytest.raises(ModelError, match="no batches"):
        reestimate_bn(_Net(), [])
