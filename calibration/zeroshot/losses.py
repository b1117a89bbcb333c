"""IntraQ's synthesis losses (METHODS.md section 3) and the hooks that feed them.

- L_BNS: `(1/L) sum_l [mean_c (mu_lc(x) - mu^run_lc)^2 + mean_c (var_lc(x) - var^run_lc)^2]` on the input
  of every BatchNorm2d the forward runs (biased variance), from forward hooks (`BnStatsHooks`).
- L_SIL (soft inception loss): `(1/B) sum_i (softmax(T(x_i))[y_i] - t_i)^2`, only the true-class entry
  penalised; t_i = 1 with probability 1/2, else U(eps, 1), drawn once per image (`draw_sil_targets`).
- L_MDC (marginal distance constraint): `sum_i m_i [max(0, d_lo - d_i) + max(0, d_i - d_up)] / (sum_i m_i
  + 1e-6)`, d_i = 1 - cos(phi(x_i), c_{y_i}); phi is the input of the model's last Linear (the global
  pooled penultimate feature, `FeatureHook`), c_y the mean phi of earlier synthetic images of class y
  (`CentreBank`), m_i = 0 while class y has no centre.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...common.errors import QuantizationError

logger = logging.getLogger(__name__)


def bn_stat_loss(x: Tensor, running_mean: Tensor, running_var: Tensor) -> Tensor:
    """One layer's L_BNS term: x [N, C, H, W] against running statistics [C] -> scalar."""
    mean = x.mean(dim=(0, 2, 3))
    var = x.var(dim=(0, 2, 3), unbiased=False)
    return (mean - running_mean).pow(2).mean() + (var - running_var).pow(2).mean()


class BnStatsHooks:
    """Forward hooks on every BatchNorm2d of `model` (tracking running statistics) collecting L_BNS terms.

    Modules whose name starts with one of `skip_prefixes` are left out (a normalising input stem has no
    statistics of the synthetic data to match). Use as a context manager, or call `remove()`.
    `enabled` False lets a forward run without collecting (the clean pass after a batch is done).
    """

    def __init__(self, model: nn.Module, skip_prefixes: Iterable[str] = ()) -> None:
        prefixes = tuple(skip_prefixes)
        self.terms: list[Tensor] = []
        self.enabled = True
        self._handles = []
        self.layers: list[str] = []
        for name, module in model.named_modules():
            if not isinstance(module, nn.BatchNorm2d) or module.running_mean is None:
                continue
            if prefixes and name.startswith(prefixes):
                continue
            self.layers.append(name)
            self._handles.append(module.register_forward_hook(self._hook))
        if not self.layers:
            raise QuantizationError(
                f"{type(model).__name__} has no BatchNorm2d with running statistics: IntraQ's L_BNS matches "
                "the synthetic images to them, so zero-shot synthesis needs a model with BatchNorm"
            )

    def _hook(self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        if self.enabled:
            self.terms.append(bn_stat_loss(inputs[0], module.running_mean, module.running_var))  # type: ignore[arg-type]

    def loss(self) -> Tensor:
        """Mean of the terms collected since the last call (then cleared).

        Raises QuantizationError when the forward reached none of the hooked layers (QABN models in
        mixing mode run no BatchNorm2d).
        """
        terms, self.terms = self.terms, []
        if not terms:
            raise QuantizationError(
                f"the forward pass ran none of the {len(self.layers)} BatchNorm2d layers (e.g. {self.layers[0]}); "
                "models whose norms do not call BatchNorm2d (QSAM's QABN) are not supported by synthesis"
            )
        return torch.stack(terms).mean()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> BnStatsHooks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def last_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    """(name, module) of the last nn.Linear in module order: the classifier head of dctq's ResNets.

    Raises QuantizationError when there is none.
    """
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not found:
        raise QuantizationError(
            f"{type(model).__name__} has no nn.Linear head; IntraQ's MDC needs its input as the image feature "
            "(turn MDC off with mdc=False)"
        )
    return found[-1]


class FeatureHook:
    """Keeps the input of the model's last Linear of the latest forward: `features` [N, F]."""

    def __init__(self, model: nn.Module) -> None:
        self.name, layer = last_linear(model)
        self.features: Tensor | None = None
        self._handle = layer.register_forward_pre_hook(self._hook)

    def _hook(self, module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
        self.features = inputs[0].flatten(1)

    def take(self) -> Tensor:
        """The features of the latest forward (then cleared). Raises QuantizationError if none ran."""
        features, self.features = self.features, None
        if features is None:
            raise QuantizationError(f"the forward pass did not reach the head {self.name!r}")
        return features

    def remove(self) -> None:
        self._handle.remove()

    def __enter__(self) -> FeatureHook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def draw_sil_targets(n: int, eps: float, gen: torch.Generator) -> Tensor:
    """t: [n] float32, 1 with probability 1/2, else uniform in [eps, 1)."""
    soft = eps + (1.0 - eps) * torch.rand(n, generator=gen)
    hard = torch.rand(n, generator=gen) < 0.5
    return torch.where(hard, torch.ones(n), soft)


def sil_loss(logits: Tensor, labels: Tensor, targets: Tensor) -> Tensor:
    """L_SIL: logits [B, K], labels [B] long, targets [B] float -> scalar.

    Only the true-class probability enters (IntraQ masks the MSE to that entry), so how the remaining
    mass spreads over other classes is free.
    """
    p_true = F.softmax(logits, dim=1).gather(1, labels[:, None]).squeeze(1)
    return (p_true - targets.to(p_true)).pow(2).mean()


def mdc_loss(
    features: Tensor, labels: Tensor, centres: Tensor, has_centre: Tensor, d_lo: float, d_up: float
) -> Tensor:
    """L_MDC: features [B, F], labels [B] long, centres [K, F], has_centre [K] bool -> scalar.

    Zero (with a graph to `features`) when no sample's class has a centre yet.
    """
    centre = centres.to(features)[labels]
    dist = 1.0 - F.cosine_similarity(features, centre, dim=1)
    mask = has_centre.to(features.device)[labels].to(features.dtype)
    hinge = F.relu(d_lo - dist) + F.relu(dist - d_up)
    return (mask * hinge).sum() / (mask.sum() + 1e-6)


def class_feature_sums(features: Tensor, labels: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """(sums [K, F] float64, counts [K] int64) of `features` [B, F] per class, on the CPU."""
    f = features.detach().to(torch.float64).cpu()
    lab = labels.detach().cpu()
    sums = torch.zeros(num_classes, f.shape[1], dtype=torch.float64).index_add_(0, lab, f)
    counts = torch.bincount(lab, minlength=num_classes).to(torch.int64)
    return sums, counts


class CentreBank:
    """Per-class sums of clean-image features, refreshed in rounds of `round_size` batches.

    A batch uses the centres of the *committed* batches (every batch of earlier rounds); a finished
    batch's sums go to `pending` and are committed when its round is complete. round_size 1 is IntraQ
    (each batch sees every earlier batch); processes working in parallel on one round cannot see each
    other, which is why distributed runs use rounds of (a multiple of) the number of processes.
    Sums are float64 and added in batch order, so the result does not depend on who computed them.
    """

    def __init__(self, num_classes: int, round_size: int = 1) -> None:
        self.num_classes = num_classes
        self.round_size = round_size
        self.sum: Tensor | None = None  # [K, F] float64, committed
        self.count = torch.zeros(num_classes, dtype=torch.int64)
        self.pending_sum: Tensor | None = None
        self.pending_count = torch.zeros(num_classes, dtype=torch.int64)

    def centres(self, dim: int) -> tuple[Tensor, Tensor]:
        """(centres [K, dim] float32, has_centre [K] bool) from the committed batches."""
        if self.sum is None:
            return torch.zeros(self.num_classes, dim), torch.zeros(self.num_classes, dtype=torch.bool)
        has = self.count > 0
        centres = self.sum / self.count.clamp_min(1)[:, None].to(torch.float64)
        return centres.to(torch.float32), has

    def add_batch(self, index: int, sums: Tensor, counts: Tensor) -> None:
        """Add finished batch `index`'s (sums [K, F] float64, counts [K]); commit at a round's end."""
        self.pending_sum = sums.clone() if self.pending_sum is None else self.pending_sum + sums
        self.pending_count = self.pending_count + counts
        if (index + 1) % self.round_size == 0:
            self.commit()

    def commit(self) -> None:
        if self.pending_sum is None:
            return
        self.sum = self.pending_sum if self.sum is None else self.sum + self.pending_sum
        self.count = self.count + self.pending_count
        self.pending_sum = None
        self.pending_count = torch.zeros(self.num_classes, dtype=torch.int64)

    def state_dict(self) -> dict[str, Tensor | None]:
        return {
            "sum": self.sum,
            "count": self.count,
            "pending_sum": self.pending_sum,
            "pending_count": self.pending_count,
        }

    def load_state_dict(self, state: dict[str, Tensor | None]) -> None:
        self.sum = state["sum"]
        self.count = state["count"]  # type: ignore[assignment]
        self.pending_sum = state["pending_sum"]
        self.pending_count = state["pending_count"]  # type: ignore[assignment]
