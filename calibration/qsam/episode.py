"""One meta-stage episode of QSAM (Ma et al., METHODS.md section 1, "Two-stage schedule"): a second-order
MAML step that trains the QABN mixer alone (the QABN layers and the mixer: models/qabn.py; the stage's
loop and options: qsam/meta.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...common.errors import ModelError
from ...models.qabn import QuantTableMixer, is_qabn, qabn_mixing


def _as_args(inputs: Tensor | tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    return (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)


def plain_ce(logits: Tensor, labels: Tensor, qt: Tensor) -> Tensor:
    """The episode loss without QAC: batch-mean cross-entropy (qt unused; the loss_fn signature)."""
    return F.cross_entropy(logits, labels)


@dataclasses.dataclass(frozen=True)
class MetaStepLosses:
    """Loss terms of one meta step (before the update): L_tr, L_te, L_base and the weighted total."""

    train: float
    test: float
    base: float
    total: float


def meta_step(
    model: nn.Module,
    batch_train: tuple[Tensor | tuple[Tensor, ...], Tensor, Tensor, Tensor | int | None],
    batch_test: tuple[Tensor | tuple[Tensor, ...], Tensor, Tensor],
    optimizer: torch.optim.Optimizer,
    *,
    loss_fn: Callable[[Tensor, Tensor, Tensor], Tensor] = plain_ce,
    inner_lr: float = 1e-3,
    test_weight: float = 1.0,
    base_weight: float = 1.0,
) -> MetaStepLosses:
    """One QSAM meta-stage episode: a second-order MAML step on `model.qabn_mixer` alone.

    With theta the mixer's parameters: w = mixer_theta(qt_tr); L_tr = loss_fn(f(x_tr; w), y_tr, qt_tr);
    L_base = mean |w - onehot(branch_index)|; theta' = theta - inner_lr * grad L_tr (graph kept);
    L_te = loss_fn(f(x_te; mixer_theta'(qt_te)), y_te, qt_te); the optimizer then steps the mixer on
    L_tr + test_weight * L_te + base_weight * L_base. The model runs in eval mode (frozen backbone and
    BN statistics; its train/eval mode is restored afterwards) and only mixer parameters receive
    gradients, so the optimizer may be built over `model.qabn_mixer.parameters()` only.

    Args:
        batch_train: (inputs, labels [N] long, qt [N, 3, 64], branch_index) at a base quality;
            inputs = the forward arguments before qt ((y, cbcr) or x); branch_index = that quality's
            branch (int or [N] long), or None to drop L_base (meta-train batch not at a base quality).
        batch_test: (inputs, labels, qt) at a held-out quality.
        loss_fn: (logits, labels, qt) -> scalar; QSAM uses `dctq.calibration.qsam.qac.qac_weighted_loss`
            (the per-sample form; the reference code's meta stage weights L_tr/L_te B times larger).
    Raises:
        ModelError: `model` was not converted with apply_qabn.
    """
    if not is_qabn(model):
        raise ModelError(f"{type(model).__name__} has no QABN layers; convert it with apply_qabn first")
    mixer: QuantTableMixer = model.qabn_mixer
    names = [n for n, _ in mixer.named_parameters()]
    params = [p for _, p in mixer.named_parameters()]
    inputs_tr, labels_tr, qt_tr, branch_index = batch_train
    inputs_te, labels_te, qt_te = batch_test
    was_training = model.training
    model.eval()
    try:
        w_tr = mixer(qt_tr)
        with qabn_mixing(model, w_tr):
            l_tr = loss_fn(model(*_as_args(inputs_tr), qt=qt_tr), labels_tr, qt_tr)
        if branch_index is None:
            l_base = w_tr.new_zeros(())
        else:
            target_index = torch.as_tensor(branch_index, device=w_tr.device).long().expand(w_tr.shape[0])
            target = F.one_hot(target_index, mixer.num_branches).to(w_tr.dtype)
            l_base = F.l1_loss(w_tr, target)
        grads = torch.autograd.grad(l_tr, params, create_graph=True)
        adapted = {n: p - inner_lr * g for n, p, g in zip(names, params, grads, strict=True)}
        w_te = torch.func.functional_call(mixer, adapted, (qt_te,))
        with qabn_mixing(model, w_te):
            l_te = loss_fn(model(*_as_args(inputs_te), qt=qt_te), labels_te, qt_te)
        total = l_tr + test_weight * l_te + base_weight * l_base
        optimizer.zero_grad(set_to_none=True)
        # Gradients w.r.t. the mixer only, so frozen backbone parameters never get a .grad.
        for p, g in zip(params, torch.autograd.grad(total, params), strict=True):
            p.grad = g
        optimizer.step()
    finally:
        model.train(was_training)
    return MetaStepLosses(*(float(t.detach()) for t in (l_tr, l_te, l_base, total)))
