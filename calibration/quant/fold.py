"""Fold BatchNorm2d into the Conv2d feeding it (eval statistics), on a copy of the model.

conv -> BN(gamma, beta, mean, var, eps) equals one conv with
    w' = w * gamma / sqrt(var + eps)   (per output channel)
    b' = (b - mean) * gamma / sqrt(var + eps) + beta,
so the quantized conv sees the weights the engine will run (TensorRT and ONNX Runtime fold the same
way; quantizing unfolded weights would calibrate ranges of weights that never exist).

Pairs are found on the torch.fx graph (a conv whose only user is a BN), tracing with every module
that holds no conv as a leaf, so input checks and hook-driven layers (the DCT stem, QSAM's QABN)
are not traced into. Models that do not trace fall back to consecutive (Conv2d, BatchNorm2d)
children of nn.Sequential containers, the one layout whose data flow the structure guarantees.
Only exact `nn.BatchNorm2d` with running statistics is folded; QABN and other norms stay.
"""

from __future__ import annotations

import copy
import itertools
import logging

import torch
from torch import fx, nn

logger = logging.getLogger(__name__)


# ConvTranspose2d keeps its output channels on weight axis 1 (groups 1: [in, out, kh, kw]).
_FOLDABLE_CONVS = (nn.Conv2d, nn.ConvTranspose2d)


class _ConvBnTracer(fx.Tracer):
    """Leaves: torch's own modules and every module without a conv inside (nothing to fold there)."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        # Convs are leaves even when subclassed (quantized convs), so conv -> BN pairs show up.
        if super().is_leaf_module(m, module_qualified_name) or isinstance(m, _FOLDABLE_CONVS):
            return True
        return not any(isinstance(sub, _FOLDABLE_CONVS) for sub in m.modules())


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    return (
        isinstance(conv, _FOLDABLE_CONVS)
        and (not isinstance(conv, nn.ConvTranspose2d) or conv.groups == 1)
        and type(bn) is nn.BatchNorm2d
        and bn.track_running_stats
        and bn.running_mean is not None
        and bn.num_features == conv.out_channels
    )


def _pairs_from_fx(model: nn.Module) -> list[tuple[str, str]] | None:
    try:
        graph = _ConvBnTracer().trace(model)
    except Exception as exc:  # fx raises many kinds (TraceError, TypeError, ...) on untraceable code
        logger.info(
            "fold_conv_bn: %s does not trace with torch.fx (%s); using nn.Sequential pairs",
            type(model).__name__,
            exc,
        )
        return None
    modules = dict(model.named_modules())
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not node.args:
            continue
        src = node.args[0]
        if not isinstance(src, fx.Node) or src.op != "call_module" or len(src.users) != 1:
            continue
        conv_name, bn_name = str(src.target), str(node.target)
        if calls[conv_name] != 1 or calls[bn_name] != 1:
            continue  # a module called twice cannot absorb one BN
        if _foldable(modules[conv_name], modules[bn_name]):
            pairs.append((conv_name, bn_name))
    return pairs


def _pairs_from_sequential(model: nn.Module) -> list[tuple[str, str]]:
    pairs = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module.named_children())
        for (a_name, a), (b_name, b) in itertools.pairwise(children):
            if _foldable(a, b):
                prefix = f"{name}." if name else ""
                pairs.append((prefix + a_name, prefix + b_name))
    return pairs


def find_conv_bn_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """[(conv module name, batchnorm module name)] that fold_conv_bn would fold, in graph order."""
    pairs = _pairs_from_fx(model)
    return _pairs_from_sequential(model) if pairs is None else pairs


@torch.no_grad()
def fold_into_conv(conv: nn.Conv2d | nn.ConvTranspose2d, bn: nn.BatchNorm2d) -> None:
    """Fold `bn`'s eval-mode affine map into `conv` in place (adds a bias if it has none)."""
    w = conv.weight.detach().double()
    gamma = (
        bn.weight.detach().double()
        if bn.weight is not None
        else torch.ones_like(bn.running_var, dtype=torch.float64)
    )
    beta = (
        bn.bias.detach().double()
        if bn.bias is not None
        else torch.zeros_like(bn.running_var, dtype=torch.float64)
    )
    factor = gamma / torch.sqrt(bn.running_var.double() + bn.eps)
    bias = conv.bias.detach().double() if conv.bias is not None else torch.zeros_like(factor)
    out_axis = 1 if isinstance(conv, nn.ConvTranspose2d) else 0
    shape = [1] * w.dim()
    shape[out_axis] = -1
    new_w = w * factor.reshape(shape)
    new_b = (bias - bn.running_mean.double()) * factor + beta
    conv.weight.copy_(new_w.to(conv.weight.dtype))
    if conv.bias is None:
        conv.bias = nn.Parameter(new_b.to(dtype=conv.weight.dtype, device=conv.weight.device))
    else:
        conv.bias.copy_(new_b.to(conv.bias.dtype))


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def fold_conv_bn(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """A copy of `model` (or `model` itself with `inplace`) with every Conv2d -> BatchNorm2d pair
    folded; each folded BN becomes Identity.

    Module names are kept (rules and state dicts still apply). Eval-mode equivalent to the original;
    train mode differs (the BN no longer normalizes with batch statistics).
    """
    folded = model if inplace else copy.deepcopy(model)
    pairs = find_conv_bn_pairs(folded)
    for conv_name, bn_name in pairs:
        fold_into_conv(folded.get_submodule(conv_name), folded.get_submodule(bn_name))  # type: ignore[arg-type]
        _set_submodule(folded, bn_name, nn.Identity())
    left = [n for n, m in folded.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    logger.info("folded %d BatchNorm layers into convs; %d norm layers left unfolded", len(pairs), len(left))
    if left:
        logger.debug("unfolded norm layers: %s", ", ".join(left))
    return folded
