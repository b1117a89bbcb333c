"""The layer-control steps of `dctq quantize`: PTQ through a calibration cache (`--calib-cache`), and after
calibration the sensitivity report (`--sensitivity`) and the fallback of layers to float (`--max-drop`),
both measured on labelled held-out images (`--val`). What may be combined: plan.check_layer_plan.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ...common.errors import QuantizationError
from ...common.files import write_text_atomic
from ...jpeg.dataset import make_loader
from ...jpeg.recompress import QualityPolicy
from ...jpeg.splits import split_data
from ...models.checkpoint import LoadedCheckpoint, input_policy_of
from ..calib_cache import collect_statistics, load_cache, ptq_from_cache, save_cache
from ..quant.model import recipe_of
from ..quant.recipe import QuantRecipe
from ..sensitivity.analysis import SensitivityReport, held_out, layer_sensitivity
from ..sensitivity.chart import sensitivity_png
from ..sensitivity.fallback import FallbackResult, fallback
from ..train.config import saved_val_fraction
from ..train.data import dataset_for_arch
from .data import calibration_loader
from .plan import LayerPlan, PtqData, ValData

logger = logging.getLogger(__name__)

VAL_SPLITS = ("val", "all")
_DRAWN_KEYS = ("data", "split", "val_fraction", "images", "batch_size", "seed")
"""What decides the statistics a cache holds (the batch size too: the first batch sets the histogram)."""


@dataclasses.dataclass(frozen=True)
class LayerProgress:
    """A layer step of `dctq quantize`: `stage` "sensitivity" or "fallback", `done` of `total` layers."""

    stage: str
    done: int
    total: int
    layer: str


# ------------------------------------------------------------------------------ calibration cache


def ptq_through_cache(
    loaded: LoadedCheckpoint,
    model: nn.Module,
    recipe: QuantRecipe,
    calib: PtqData,
    batches: Callable[[Any], Iterator[Any]],
) -> tuple[nn.Module, dict[str, Any]]:
    """(quantized model, what was drawn + {"calib_cache": {...}}): PTQ of `model` (the FP model on its
    device) with every activation range from the cache `calib.cache`, collected first (one pass over
    `batches(loader)`) and written there when the file does not exist yet.

    Raises QuantizationError for a cache of another model, or one collected on other images than the
    --calib options given now (naming both).
    """
    path = calib.cache
    assert path is not None
    if recipe.act_asymmetric:
        raise QuantizationError(
            f"--calib-cache {path} holds statistics of |x| only, and asymmetric activation ranges need each "
            "side's extremes: leave out --calib-cache or --asymmetric"
        )
    if path.is_file():
        cache = load_cache(path, model=loaded.model)
        drawn = dict(cache.data)
        if calib.source is not None:
            _, now = _calib_loader(loaded, calib)
            mine = {k: now.get(k) for k in _DRAWN_KEYS}
            theirs = {k: drawn.get(k) for k in _DRAWN_KEYS}
            if mine != theirs:
                differ = ", ".join(
                    f"{k}: cache {theirs[k]} vs now {mine[k]}" for k in _DRAWN_KEYS if mine[k] != theirs[k]
                )
                raise QuantizationError(
                    f"--calib-cache {path} was collected on other calibration images ({differ}); leave out --calib "
                    "and its options to reuse it, or give another --calib-cache path"
                )
        logger.info("calibrating from the cached statistics of %s (no forward pass)", path)
        return ptq_from_cache(model, recipe, cache), {
            **drawn,
            "calib_cache": {"file": str(path), "reused": True},
        }
    loader, drawn = _calib_loader(loaded, calib)
    cache = collect_statistics(model, batches(loader), data=drawn, arch=loaded.arch, fold_bn=recipe.fold_bn)
    save_cache(path, cache)
    logger.info("wrote the calibration cache %s (%d quantizer places)", path, len(cache.statistics))
    return ptq_from_cache(model, recipe, cache), {
        **drawn,
        "calib_cache": {"file": str(path), "reused": False},
    }


def _calib_loader(loaded: LoadedCheckpoint, calib: PtqData) -> tuple[Any, dict[str, Any]]:
    return calibration_loader(
        loaded,
        calib.source,  # type: ignore[arg-type]
        split=calib.split,
        num_images=calib.num_images,
        batch_size=calib.batch_size,
        seed=calib.seed,
        workers=calib.workers,
    )


# ------------------------------------------------------------------------------ held-out images


def val_for(plan: LayerPlan, calib: PtqData | None) -> ValData:
    """The held-out images of `plan`: its own, else (or for a ValData without source) the "val" split of
    PTQ's calibration source (the images a calibration cache was collected on, when only the cache is given).
    """
    val = plan.val or ValData(None, seed=calib.seed if calib is not None else 0)
    if val.source is not None:
        return val
    source, split = (calib.source, calib.split) if calib is not None else (None, None)
    if calib is not None and source is None and calib.cache is not None:
        drawn = load_cache(calib.cache).data  # the images the cached statistics were collected on
        source, split = drawn.get("data"), drawn.get("split")
    if source is None or split != "train":
        raise QuantizationError(
            "--sensitivity and --max-drop need labelled held-out images: give --val DIR|cifar10 (by default the "
            "validation split of the calibration images is used, when they came from the train split)"
        )
    return dataclasses.replace(val, source=source)


def held_out_batches(loaded: LoadedCheckpoint, val: ValData) -> tuple[list[Any], dict[str, Any]]:
    """(batches in memory, what was drawn): `val.num_images` images of `val.split` (split with the FP
    checkpoint's val_fraction), files as stored, in the architecture's input layout.

    Raises DataError / QuantizationError for a bad split or count, and what split_data raises.
    """
    if val.split not in VAL_SPLITS:
        raise QuantizationError(f"--val-split must be one of {', '.join(VAL_SPLITS)}, got {val.split!r}")
    if val.num_images < 1 or val.batch_size < 1:
        raise QuantizationError(f"--val-images must be >= 1, got {val.num_images}")
    val_fraction = saved_val_fraction(loaded.extra)
    splits = split_data(val.source, val_fraction)
    pool = splits.samples(val.split)
    rng = np.random.default_rng(val.seed)
    chosen = sorted(rng.choice(len(pool), size=min(val.num_images, len(pool)), replace=False).tolist())
    dataset = dataset_for_arch(
        loaded.arch,
        splits.root,
        [pool[i] for i in chosen],
        train=False,
        policy=QualityPolicy(),
        input_policy=input_policy_of(loaded),
    )
    batches = list(make_loader(dataset, val.batch_size, shuffle=False))
    info = {
        "data": str(val.source),
        "split": val.split,
        "val_fraction": val_fraction,
        "images": len(chosen),
        "seed": val.seed,
    }
    return batches, info


# ------------------------------------------------------------------------------ sensitivity and fallback


def apply_layer_plan(
    loaded: LoadedCheckpoint,
    qmodel: nn.Module,
    plan: LayerPlan,
    calib: PtqData | None,
    *,
    report_base: Path | None = None,
    progress: Callable[[LayerProgress], None] | None = None,
) -> tuple[dict[str, Any], SensitivityReport, FallbackResult | None]:
    """Rank `qmodel`'s layers on the held-out images and, with `plan.max_drop`, return layers to float in
    place until the drop is met. With --sensitivity and a `report_base` (q.pt -> q), the ranking is written
    to `<base>.sensitivity.json` and `<base>.sensitivity.png`.

    Returns (info for the checkpoint's record, the ranking, the fallback result or None).
    """
    val = val_for(plan, calib)
    batches, drawn = held_out_batches(loaded, val)
    device = next((p.device for p in qmodel.parameters()), None)
    data = held_out(loaded.model.to(device) if device is not None else loaded.model, batches)

    def relay(stage: str) -> Callable[[int, int, str], None] | None:
        if progress is None:
            return None
        return lambda done, total, layer: progress(LayerProgress(stage, done, total, layer))

    report = layer_sensitivity(qmodel, data, metric=plan.metric, progress=relay("sensitivity"))
    result = (
        fallback(qmodel, data, report, plan.max_drop, progress=relay("fallback"))
        if plan.max_drop is not None
        else None
    )
    info: dict[str, Any] = {
        "val": drawn,
        "fp_top1": 100 * report.fp.top1,
        "quantized_top1": 100 * report.quantized.top1,
        "ranking": report.ranking(),
    }
    if result is not None:
        info["fallback"] = result.to_dict()
    if plan.sensitivity and report_base is not None:
        json_path = report_base.with_name(report_base.name + ".sensitivity.json")
        png_path = report_base.with_name(report_base.name + ".sensitivity.png")
        record = {
            "arch": loaded.arch,
            "recipe": recipe_of(qmodel).to_dict() if recipe_of(qmodel) else None,  # type: ignore[union-attr]
            "val": drawn,
            "sensitivity": report.to_dict(),
            "fallback": result.to_dict() if result is not None else None,
        }
        write_text_atomic(json_path, json.dumps(record, indent=2, allow_nan=False) + "\n")
        sensitivity_png(report, png_path)
        info["files"] = {"json": str(json_path), "png": str(png_path)}
    return info, report, result
