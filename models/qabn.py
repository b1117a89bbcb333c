"""QSAM's quantization-aware batch norm (QABN): one BatchNorm branch per anchor JPEG quality.

Ma et al., "Picking Up Quantization Steps for Compressed Image Classification" (METHODS.md section 1).
Every BatchNorm2d of a model becomes K independent branches (own gamma/beta/running statistics), one
per base quality `QSAM_BASE_QUALITIES` (branch k <-> QSAM_BASE_QUALITIES[k]). Two ways to use them:

- base stage, hard routing: `with qabn_routing(model, branch_index): model(...)`, sample i is
  normalised by branch `branch_index[i]` (train mode: batch statistics of its group);
- meta stage and inference, mixing: `model(..., qt)`; a forward pre-hook maps the file's quant
  tables to weights `w = QuantTableMixer(qt)` [N, K] and every layer returns
  `sum_k w[:, k] * BN_k(x)` with each branch's running statistics.

`dctq.calibration.qsam.meta.meta_step` runs QSAM's MAML-style episode that trains the mixer alone.
Which branch serves which image under hard routing (plans, QSAM's chunked batches, oracle routing by
the quant tables) is in models/qabn_routing.py; `choose_routing` says how a model is evaluated.
"""

from __future__ import annotations

import contextlib
import fnmatch
import inspect
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from ..common.errors import ModelError
from .qabn_routing import QSAM_BASE_QUALITIES, RoutingPlan, plan_routing

ROUTINGS = ("auto", "oracle", "mixer")
"""How a QABN model is evaluated: "oracle" (hard routing to the branch of the nearest base quality,
`qabn_routing.oracle_branch_index`), "mixer" (the quant-table MLP mixes the branches), or "auto"."""


class QABNState:
    """Switchboard shared by a model's mixer hook and all its QABN layers (one per model, no globals).

    `routing` (hard routing) wins over `weights` (mixing); `pinned` stops the hook from replacing
    weights that a caller set with `qabn_mixing`.
    """

    def __init__(self) -> None:
        self.weights: Tensor | None = None  # [N, K]
        self.routing: RoutingPlan | None = None
        self.pinned = False


class QABatchNorm2d(nn.Module):
    """K independent BatchNorm2d branches over `num_features` channels, routed or mixed per sample.

    forward(x: [N, C, H, W]) -> [N, C, H, W] follows the shared `QABNState`: hard routing when a
    routing plan is set, otherwise mixing with its weights; `route` and `mix` can be called directly.

    Mixing always uses each branch's *running* statistics and never updates them, also when the
    layer is in train mode: with batch statistics all K branches would see the same mean/variance
    (one batch), so they would differ only by their affine part, and every branch's running
    statistics would absorb the mixed-quality batch, erasing what the base stage learned per quality.
    gamma/beta still receive gradients in mixing (freeze them yourself when they must not move).
    """

    def __init__(
        self,
        num_features: int,
        num_branches: int = len(QSAM_BASE_QUALITIES),
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        state: QABNState | None = None,
    ) -> None:
        super().__init__()
        if num_branches < 1:
            raise ModelError(f"QABatchNorm2d needs at least one branch, got num_branches={num_branches}")
        self.num_features = num_features
        self.num_branches = num_branches
        self.branches = nn.ModuleList(
            nn.BatchNorm2d(num_features, eps=eps, momentum=momentum, affine=affine)
            for _ in range(num_branches)
        )
        self.qabn_name = ""  # module path, filled by apply_qabn for error messages
        self._state = state if state is not None else QABNState()

    @classmethod
    def from_batchnorm(
        cls, bn: nn.BatchNorm2d, num_branches: int, state: QABNState | None = None, name: str = ""
    ) -> QABatchNorm2d:
        """A QABN layer whose every branch is a copy of `bn` (parameters, running stats, eps, momentum).

        Raises:
            ModelError: `bn` does not track running statistics (mixing needs them).
        """
        if not bn.track_running_stats:
            raise ModelError(
                f"BatchNorm layer {name or bn!r} has track_running_stats=False; QABN mixes the branches' "
                "running statistics, so build the model with tracked statistics"
            )
        layer = cls(bn.num_features, num_branches, bn.eps, bn.momentum, bn.affine, state)
        layer.qabn_name = name
        ref = bn.weight if bn.affine else bn.running_mean
        layer.to(device=ref.device, dtype=ref.dtype)
        for branch in layer.branches:
            branch.load_state_dict(bn.state_dict())
        return layer

    def extra_repr(self) -> str:
        return f"{self.num_features}, num_branches={self.num_branches}"

    def _where(self) -> str:
        return f"QABN layer {self.qabn_name!r}" if self.qabn_name else "QABN layer"

    def forward(self, x: Tensor) -> Tensor:
        if self._state.routing is not None:
            return self.route(x, self._state.routing)
        if self._state.weights is not None:
            return self.mix(x, self._state.weights)
        raise ModelError(
            f"{self._where()} has neither mixing weights nor a routing: call the model with its quant "
            "tables (qt=...), or inside qabn_routing(model, branch_index) / qabn_mixing(model, weights)"
        )

    def branch_affine(self) -> tuple[Tensor, Tensor]:
        """(scale, shift), each [K, C]: branch k in eval mode is `x * scale[k] + shift[k]` per channel."""
        mean = torch.stack([b.running_mean for b in self.branches])
        var = torch.stack([b.running_var for b in self.branches])
        scale = torch.rsqrt(var + self.branches[0].eps)
        if self.branches[0].affine:
            scale = scale * torch.stack([b.weight for b in self.branches])
            shift = torch.stack([b.bias for b in self.branches]) - mean * scale
        else:
            shift = -mean * scale
        return scale, shift

    def mix(self, x: Tensor, weights: Tensor) -> Tensor:
        """sum_k weights[:, k] * BN_k(x) with running statistics; x [N, C, H, W], weights [N, K].

        Computed as one per-sample affine map (weights @ scale, weights @ shift), which is the same
        function and exports as a MatMul and a multiply-add.
        """
        if (
            x.dim() != 4
            or weights.dim() != 2
            or weights.shape[1] != self.num_branches
            or weights.shape[0] != x.shape[0]
        ):
            raise ModelError(
                f"{self._where()} mixes x [N, C, H, W] with weights [N, {self.num_branches}], got x "
                f"{tuple(x.shape)} and weights {tuple(weights.shape)}"
            )
        scale, shift = self.branch_affine()
        w = weights.to(scale.dtype)
        s = (w @ scale).to(x.dtype)[:, :, None, None]
        b = (w @ shift).to(x.dtype)[:, :, None, None]
        return x * s + b

    def route(self, x: Tensor, routing: RoutingPlan | Tensor) -> Tensor:
        """Sample i normalised by branch routing[i] alone (train mode: its group's batch statistics).

        routing: a branch index vector [N] (long) or a plan from `plan_routing`.
        """
        plan = routing if isinstance(routing, RoutingPlan) else plan_routing(routing, self.num_branches)
        if plan.size != x.shape[0]:
            raise ModelError(
                f"{self._where()} got a batch of {x.shape[0]} samples but a branch_index of {plan.size}"
            )
        if plan.order is not None:
            x = x.index_select(0, plan.order.to(x.device))
        if len(plan.slices) == 1:
            out = self.branches[plan.slices[0][0]](x)
        else:
            out = torch.cat([self.branches[k](x[start:stop]) for k, start, stop in plan.slices])
        if plan.inverse is not None:
            out = out.index_select(0, plan.inverse.to(x.device))
        return out


class QuantTableMixer(nn.Module):
    """QSAM's mixing MLP: the raw Y and Cb quant tables -> K branch weights summing to one.

    Linear(128, 128)-ReLU-Linear(128, 256)-ReLU-Linear(256, K); the raw output r is normalised
    linearly, w = r / sum(r), no softmax, so weights may be negative. A sum within `eps` of zero is
    replaced by +-eps (its sign kept) so that w stays finite.
    """

    def __init__(self, num_branches: int = len(QSAM_BASE_QUALITIES), eps: float = 1e-5) -> None:
        super().__init__()
        self.num_branches = num_branches
        self.eps = eps
        # The QSAM stage whose result this mixer is: "base" (untrained: the base stage routes by the
        # quant tables instead) or "meta" (trained by calibration.qsam.meta.train_meta). Not saved in the
        # state dict: checkpoints record it as extra["qsam"]["stage"]; see `choose_routing`.
        self.stage = "base"
        self.net = nn.Sequential(
            nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 256), nn.ReLU(), nn.Linear(256, num_branches)
        )

    def features(self, qt: Tensor) -> Tensor:
        """qt [N, 3, 64] (or [N, 2, 64]) step values 1..255, natural order -> [N, 128] (Y then Cb).

        Raises:
            ModelError: qt has another shape.
        """
        if qt.dim() != 3 or qt.shape[1] < 2 or qt.shape[2] != 64:
            raise ModelError(
                f"QABN needs quant tables qt [N, 3, 64] (Y, Cb, Cr; natural order), got {tuple(qt.shape)}"
            )
        return qt[:, :2].reshape(qt.shape[0], 128).to(self.net[0].weight.dtype)

    def forward(self, qt: Tensor) -> Tensor:
        """qt [N, 3, 64] -> weights [N, K] (the mixer's dtype), each row summing to one."""
        raw = self.net(self.features(qt))
        total = raw.sum(dim=1, keepdim=True)
        eps = torch.full_like(total, self.eps)
        total = torch.where(total.abs() < self.eps, torch.where(total < 0, -eps, eps), total)
        return raw / total


def is_qabn(model: nn.Module) -> bool:
    """True when `apply_qabn` has converted `model`."""
    return isinstance(getattr(model, "_qabn_state", None), QABNState)


def choose_routing(model: nn.Module, routing: str = "auto", *, stage: str | None = None) -> str | None:
    """How to evaluate `model`: "oracle", "mixer", or None for a model without QABN layers.

    routing "auto" follows QSAM: oracle routing after the base stage (the mixer is not trained yet),
    the mixer after the meta stage. `stage` is the checkpoint's extra["qsam"]["stage"] (None when it
    records none: the mixer); for an in-memory model, pass `model.qabn_mixer.stage`.

    Raises:
        ModelError: a routing outside ROUTINGS.
    """
    if routing not in ROUTINGS:
        raise ModelError(f"--routing (qabn_routing) must be one of {ROUTINGS}, got {routing!r}")
    if not is_qabn(model):
        return None
    if routing != "auto":
        return routing
    return "oracle" if stage == "base" else "mixer"


def _qt_position(model: nn.Module) -> int:
    params = list(inspect.signature(model.forward).parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    for i, p in enumerate(positional):
        if p.name == "qt":
            return i
    raise ModelError(
        f"{type(model).__name__}.forward has no `qt` argument; QABN reads the quant tables from "
        "forward(y, cbcr, qt) (DCT models) or forward(x, qt=None) (RGB models)"
    )


def _qabn_pre_hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
    state: QABNState = module._qabn_state
    if state.routing is not None or state.pinned:
        return None
    pos = module._qabn_qt_index
    qt = kwargs.get("qt") if "qt" in kwargs else (args[pos] if len(args) > pos else None)
    if qt is None:
        raise ModelError(
            f"{type(module).__name__} has QABN layers and needs the quant tables: call it with qt "
            "[N, 3, 64], or inside qabn_routing(model, branch_index) for hard routing"
        )
    state.weights = module.qabn_mixer(qt)
    return None


def _qabn_post_hook(module: nn.Module, args: tuple, kwargs: dict, output: object) -> None:
    state: QABNState = module._qabn_state
    if not state.pinned:
        state.weights = None  # drop the batch's graph; the next call computes its own weights
    return None


def apply_qabn(
    model: nn.Module, num_branches: int = len(QSAM_BASE_QUALITIES), *, exclude: tuple[str, ...] = ()
) -> nn.Module:
    """Convert `model` in place to QSAM's QABN and return it.

    Every nn.BatchNorm2d (except module names matching a wildcard in `exclude`, e.g. "stem.*")
    becomes a QABatchNorm2d whose branches all copy it, so a plainly trained model keeps its
    function for any weights summing to one. Adds `model.qabn_mixer` (QuantTableMixer),
    `model.qabn_num_branches`, and a forward pre-hook that computes the weights from `qt` once per
    call (DCT models: forward(y, cbcr, qt); RGB models: forward(x, qt); positional or keyword).

    Raises:
        ModelError: already converted, no `qt` argument in forward, or no BatchNorm2d to convert.
    """
    if is_qabn(model):
        raise ModelError(
            f"{type(model).__name__} already has QABN layers ({model.qabn_num_branches} branches)"
        )
    qt_index = _qt_position(model)
    state = QABNState()
    targets = [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, nn.BatchNorm2d) and not any(fnmatch.fnmatchcase(name, p) for p in exclude)
    ]
    if not targets:
        raise ModelError(f"{type(model).__name__} has no BatchNorm2d layer to turn into QABN")
    for name, bn in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, QABatchNorm2d.from_batchnorm(bn, num_branches, state, name))
    ref = next(model.parameters(), None)
    model.qabn_mixer = QuantTableMixer(num_branches).to(device=ref.device if ref is not None else None)
    model.qabn_num_branches = num_branches
    model._qabn_state = state
    model._qabn_qt_index = qt_index
    model.register_forward_pre_hook(_qabn_pre_hook, with_kwargs=True)
    model.register_forward_hook(_qabn_post_hook, with_kwargs=True)
    return model


def _state_of(model: nn.Module) -> QABNState:
    if not is_qabn(model):
        raise ModelError(f"{type(model).__name__} has no QABN layers; convert it with apply_qabn first")
    return model._qabn_state


@contextlib.contextmanager
def _override(model: nn.Module, routing: RoutingPlan | None, weights: Tensor | None) -> Iterator[None]:
    state = _state_of(model)
    saved = (state.routing, state.weights, state.pinned)
    state.routing, state.weights, state.pinned = routing, weights, weights is not None
    try:
        yield
    finally:
        state.routing, state.weights, state.pinned = saved


def qabn_routing(model: nn.Module, branch_index: Tensor) -> contextlib.AbstractContextManager[None]:
    """Hard routing (QSAM base stage) for calls inside the `with` block; the mixer is not used.

    branch_index: [N] long in 0..K-1, sample i -> branch branch_index[i]; QSAM's layout (chunk k of
    the batch -> branch k) is `chunk_branch_index(N // K, K)`.

    Raises:
        ModelError: `model` has no QABN, or an index is outside 0..K-1.
    """
    _state_of(model)
    return _override(model, plan_routing(branch_index, model.qabn_num_branches), None)


def qabn_mixing(model: nn.Module, weights: Tensor) -> contextlib.AbstractContextManager[None]:
    """Mix with the given weights [N, K] for calls inside the `with` block instead of the mixer's."""
    return _override(model, None, weights)
