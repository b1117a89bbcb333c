"""ODM's cooperative gradients: a regulariser's gradient is applied only where it agrees with the
reconstruction gradient, element by element, and the disagreement is measured.

    g = g_rec + lambda * 1[sign(g_reg) == sign(g_rec)] * g_reg        (per parameter element)

An element whose reconstruction gradient is exactly 0 takes no regulariser gradient (nothing to agree
with). The gradient conflict ratio of a layer is the share of its parameter elements, among those where
both gradients are non-zero, whose signs are opposite. Under torchrun both gradients are averaged over the
processes first (the gate needs the two global gradients separately, which DDP's single fused reduction
cannot give), with torch.distributed.all_reduce.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .. import distributed as dd


def _average(grads: list[Tensor], env: dd.DistEnv) -> None:
    if env.distributed:
        for g in grads:
            dist.all_reduce(g, op=dist.ReduceOp.SUM)
            g.div_(env.world_size)


def cooperative_backward(
    rec: Tensor,
    reg: Tensor,
    params: Sequence[nn.Parameter],
    weight: float,
    env: dd.DistEnv,
) -> tuple[Tensor, Tensor]:
    """Set each parameter's .grad to the gated sum (module docstring) of d rec and weight * d reg.

    Returns (conflicting elements, counted elements) per parameter: two int64 [len(params)] tensors.
    """
    g_rec = torch.autograd.grad(rec, params, retain_graph=True, allow_unused=True)
    g_reg = torch.autograd.grad(reg, params, allow_unused=True)
    rec_list = [g if g is not None else torch.zeros_like(p) for g, p in zip(g_rec, params, strict=True)]
    reg_list = [g if g is not None else torch.zeros_like(p) for g, p in zip(g_reg, params, strict=True)]
    _average(rec_list, env)
    _average(reg_list, env)
    conflicts = torch.zeros(len(params), dtype=torch.int64)
    counted = torch.zeros(len(params), dtype=torch.int64)
    for i, (p, gr, gv) in enumerate(zip(params, rec_list, reg_list, strict=True)):
        product = torch.sign(gr) * torch.sign(gv)
        conflicts[i] = int((product < 0).sum())
        counted[i] = int((product != 0).sum())
        p.grad = gr + weight * (product > 0).to(gr.dtype) * gv
    return conflicts, counted


def layer_of(param_name: str) -> str:
    """The module a parameter belongs to ('body.0.conv1.weight' -> 'body.0.conv1')."""
    return param_name.rpartition(".")[0]
