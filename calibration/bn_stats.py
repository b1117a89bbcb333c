"""BatchNorm statistics re-estimated on other images, the weights untouched.

A model trained on files of one JPEG quality normalises the features of another quality with the wrong
means and variances; re-estimating the running statistics on images of the deployment quality recovers
much of the loss with no training (measured: +11 points at q10 for the q75-trained CIFAR recipe model,
docs/benchmarks.md). `dctq adapt-bn` (calibration/workflow/adapt_bn.py) applies it to a checkpoint.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from ..common.errors import ModelError
from ..jpeg.batch import model_inputs


def batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers of `model` that keep running statistics, in module order."""
    return [
        m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]


@torch.no_grad()
def reestimate_bn(model: nn.Module, batches: Iterable[Mapping[str, Any]]) -> nn.Module:
    """A copy of `model` whose BatchNorm running statistics are the averages over `batches` (dicts of
    a dctq loader; each layer's mean and unbiased variance averaged over the batches with equal weight),
    every parameter and every other buffer unchanged. The copy is in eval mode, on `model`'s device.

    Raises ModelError for a model without BatchNorm layers or an empty `batches`.
    """
    adapted = copy.deepcopy(model)
    norms = batch_norms(adapted)
    if not norms:
        raise ModelError("the model has no BatchNorm layers, so there are no statistics to re-estimate")
    momenta = [bn.momentum for bn in norms]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # a cumulative average over all batches, not an exponential one
    device = next((p.device for p in adapted.parameters()), torch.device("cpu"))
    adapted.train()
    seen = 0
    for batch in batches:
        adapted(*model_inputs(batch, device))
        seen += 1
    for bn, momentum in zip(norms, momenta, strict=True):
        bn.momentum = momentum
    if seen == 0:
        raise ModelError("no batches to re-estimate BatchNorm statistics on; the data set is empty")
    return adapted.eval()
