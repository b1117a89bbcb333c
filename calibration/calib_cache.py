"""Calibration caches: the activation statistics of one calibration pass, saved to a file and reused to
calibrate any recipe of the same model (another calibrator, percentile, bit width, skip list or
override) without running the data again (`dctq quantize --calib-cache FILE`).

    cache = collect_statistics(model, batches, data={"data": "cifar10", ...})   # one forward pass
    save_cache("calib.pt", cache)
    qmodel = ptq_from_cache(model, recipe, load_cache("calib.pt", model=model))  # no forward pass

PTQ measures every activation range on the float network (quant/model.calibrate), so what a quantizer
sees does not depend on which other layers are quantized or how: one pass over a model with a quantizer
at every place any recipe can put one (every Conv/Linear input and both inputs of every residual Add)
serves every recipe with the same `fold_bn` (folding BatchNorm changes the float network's activations by
rounding only, but the promise here is equality, so the cache records it and refuses the other). Each place keeps the running max of |x|, the sign and the |x| histogram
(calibrators/statistics.py); ranges derived from them are bit for bit the ranges of calibrating directly
on the same batches. Weights need no statistics (per-channel max of the weights themselves).

The file (`torch.load(weights_only=True)` reads it):
  {"format": "dctq.calib_cache", "version": 1, "model": {"arch", "fingerprint"}, "data": {...what was
   drawn...}, "num_bins": 2048, "quantizers": {"<layer>.input_quantizer": {amax, negative, hist, ...}}}
`model.fingerprint` is the SHA-256 of the FP state dict (zeroshot.data.teacher_fingerprint): a cache is
refused for any other model, including another training epoch of the same architecture.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..common.errors import QuantizationError
from ..common.files import atomic_path
from ..common.torch_files import load_torch_file
from .calibrators.statistics import ActivationStatistics, StatisticsCalibrator
from .ptq import model_args
from .quant.model import calibrate_weights, iter_quantizers, quantize_model
from .quant.quantizer import QuantState
from .quant.recipe import QuantRecipe
from .zeroshot.data import teacher_fingerprint

logger = logging.getLogger(__name__)

FORMAT = "dctq.calib_cache"
VERSION = 1
NUM_BINS = 2048
"""The histogram calibrators' default bins; a calibrator given other num_bins needs its own cache."""


@dataclasses.dataclass(frozen=True)
class CalibCache:
    """Statistics of one calibration pass: per activation quantizer name, and where they came from.

    model: {"arch": name or None, "fingerprint": SHA-256 of the FP state dict};
    data: what was drawn (plain data, e.g. calibration_loader's info); num_bins: the histograms' bins;
    fold_bn: whether BatchNorm was folded into the convs of the network the statistics were taken on.
    """

    model: dict[str, Any]
    data: dict[str, Any]
    statistics: dict[str, ActivationStatistics]
    num_bins: int = NUM_BINS
    fold_bn: bool = True

    def check_model(self, model: nn.Module, source: Path | str = "the calibration cache") -> None:
        """Raise QuantizationError unless `model` (the FP model) is the one the statistics came from."""
        if self.model.get("fingerprint") != teacher_fingerprint(model):
            raise QuantizationError(
                f"{source} holds statistics of another model ({self.model.get('arch')}, fingerprint "
                f"{str(self.model.get('fingerprint'))[:12]}...), not of this checkpoint; give another "
                "--calib-cache path to collect new statistics"
            )


def _superset_recipe(fold_bn: bool) -> QuantRecipe:
    # A quantizer wherever any recipe may place one: no skip rules, both inputs of residual Adds.
    return QuantRecipe(calibrator="max", rules=(), add_inputs="both", fold_bn=fold_bn)


@torch.no_grad()
def collect_statistics(
    model: nn.Module,
    batches: Iterable[Any],
    *,
    data: dict[str, Any] | None = None,
    arch: str | None = None,
    num_bins: int = NUM_BINS,
    fold_bn: bool = True,
    max_batches: int | None = None,
) -> CalibCache:
    """One calibration pass over `batches` (what ptq takes) through the float `model`, keeping the
    statistics of every place a recipe can quantize. data / arch: recorded in the cache; fold_bn: the
    recipes it serves (QuantRecipe.fold_bn).

    Raises QuantizationError when `batches` yields nothing.
    """
    probe = quantize_model(model, _superset_recipe(fold_bn))
    acts = [(name, q) for name, q in iter_quantizers(probe) if not q.is_weight]
    for _, q in acts:
        q.calibrator = StatisticsCalibrator(8, None, num_bins=num_bins)
        q.start_calibration()
    for _, q in iter_quantizers(probe):
        if q.is_weight:
            q.state = QuantState.DISABLED
    probe.eval()
    device = next((p.device for p in probe.parameters()), torch.device("cpu"))
    seen = 0
    for batch in itertools.islice(batches, max_batches):
        probe(*model_args(batch, device))
        seen += 1
    if seen == 0:
        raise QuantizationError("the calibration cache got no batches; the data set or loader is empty")
    stats = {name: q.calibrator.statistics() for name, q in acts if q.calibrator.observed}  # type: ignore[union-attr]
    logger.info("collected statistics of %d quantizer places over %d batches", len(stats), seen)
    fingerprint = teacher_fingerprint(model)
    return CalibCache({"arch": arch, "fingerprint": fingerprint}, dict(data or {}), stats, num_bins, fold_bn)


def ptq_from_cache(model: nn.Module, recipe: QuantRecipe | None, cache: CalibCache) -> nn.Module:
    """What `ptq(model, recipe, batches)` returns, with every activation range derived from `cache`
    (collected from `model` over those batches) instead of a forward pass.

    Raises QuantizationError for another model, a quantizer the cache has no statistics for (a layer
    the calibration batches never reached), or a calibrator whose num_bins differs from the cache's.
    """
    cache.check_model(model)
    recipe = recipe or QuantRecipe()
    if recipe.fold_bn != cache.fold_bn:
        raise QuantizationError(
            f"the calibration cache was collected with BatchNorm {'folded' if cache.fold_bn else 'unfolded'} "
            f"and this recipe has fold_bn={recipe.fold_bn}; collect a cache for it"
        )
    qmodel = quantize_model(model, recipe)
    missing = []
    for name, q in iter_quantizers(qmodel):
        if q.is_weight:
            continue
        stats = cache.statistics.get(name)
        if stats is None:
            missing.append(name)
            continue
        q.calibrate_from(stats)
    if missing:
        raise QuantizationError(
            f"the calibration cache has no statistics for {len(missing)} quantizer(s) ({', '.join(missing[:3])}"
            f"{', ...' if len(missing) > 3 else ''}): the calibration pass never reached those layers; "
            "add 'skip' rules for them or collect a new cache"
        )
    calibrate_weights(qmodel)
    qmodel.eval()
    return qmodel


def save_cache(path: Path | str, cache: CalibCache) -> Path:
    """Write `cache` atomically (see the module docstring); returns the path."""
    path = Path(path)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "model": dict(cache.model),
        "data": dict(cache.data),
        "num_bins": cache.num_bins,
        "fold_bn": cache.fold_bn,
        "quantizers": {name: s.to_dict() for name, s in cache.statistics.items()},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_cache(path: Path | str, *, model: nn.Module | None = None) -> CalibCache:
    """Read a calibration cache; with `model`, check it came from that FP model.

    Raises QuantizationError naming the file when it is unreadable, of another kind or version, damaged,
    or made from another model.
    """
    path = Path(path)
    if not path.is_file():
        raise QuantizationError(f"calibration cache not found: {path}")
    payload = load_torch_file(path, "dctq calibration cache", QuantizationError, fmt=FORMAT)
    version = payload.get("version")
    if version != VERSION:
        raise QuantizationError(f"{path}: calibration cache version {version!r}; this dctq reads {VERSION}")
    quantizers = payload.get("quantizers")
    if not isinstance(quantizers, dict) or not isinstance(payload.get("model"), dict):
        raise QuantizationError(f"{path} is a damaged calibration cache (no model or quantizers)")
    stats = {name: ActivationStatistics.from_dict(s, f"{path} [{name}]") for name, s in quantizers.items()}
    cache = CalibCache(
        payload["model"],
        dict(payload.get("data") or {}),
        stats,
        int(payload.get("num_bins", NUM_BINS)),
        bool(payload.get("fold_bn", True)),
    )
    if model is not None:
        cache.check_model(model, path)
    return cache
