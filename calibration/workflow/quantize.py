"""`dctq quantize` as a library call: a quantized checkpoint from an FP one, by PTQ on real images,
zero-shot (IntraQ / BN-statistics synthetic images and KD fine-tuning) or quantization-aware training on
real data (plain QAT or ODM, calibration/qat). What the file holds and how it is rebuilt on load:
calibration/quant/checkpoint.py; what may be asked: plan.py. SR models get the SR recipe rules (head,
body_end and tail in full precision: quant.recipe.with_task_rules) whatever the method.

    result = quantize_checkpoint("best.pt", "q.pt", recipe=build_recipe(bits="w8a8"),
                                 calib=PtqData("cifar10", num_images=512))
    result = quantize_checkpoint("best.pt", "q.pt", method="intraq", recipe=get_recipe("w4a4"),
                                 zero_shot=ZeroShotPlan(fine_tune=ZeroShotConfig().with_epochs(8)))
    result = quantize_checkpoint("best.pt", "q.pt", recipe=get_recipe("w4a4"),
                                 calib=PtqData("cifar10", cache=Path("calib.pt")),       # --calib-cache
                                 layers=LayerPlan(sensitivity=True, max_drop=1.0))        # control.py
    result = quantize_checkpoint("edsr.pt", "q.pt", method="odm", recipe=build_recipe(bits="w4a4"),
                                 qat=QatPlan("sr", QatConfig(method="odm", **method_defaults("odm"))))
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from torch import nn

from ...common.devices import resolve_device
from ...common.errors import DataError, QuantizationError
from ...common.records import metrics_path, write_metrics
from ...models.checkpoint import LoadedCheckpoint, load_checkpoint
from ...models.registry import get_model_info
from ..distributed import detect_env
from ..ptq import ptq
from ..qat.config import QatEvent
from ..qat.data import qat_dataset
from ..qat.loop import qat_quantize
from ..quant.checkpoint import QUANT_RECIPE_KEY, save_quantized
from ..quant.model import QuantizerSummary, quantization_summary, recipe_of
from ..quant.recipe import QuantRecipe, with_task_rules
from ..zeroshot.config import SynthConfig, SynthEvent, ZeroShotEpochEnd, ZeroShotEvent
from ..zeroshot.distill import distill_on_synthetic, zero_shot_quantize
from .control import LayerProgress, apply_layer_plan, ptq_through_cache
from .data import calibration_loader, check_same_options, reused_synthetic
from .plan import (
    QAT,
    LayerPlan,
    PtqData,
    QatPlan,
    ZeroShotPlan,
    check_layer_plan,
    check_plan,
    plan_flags,
    qat_state_path,
)

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------ what it reports


@dataclasses.dataclass(frozen=True)
class CalibProgress:
    """PTQ calibration: `batch` of `batches` real-image batches done."""

    batch: int
    batches: int


QuantizeEvent = CalibProgress | SynthEvent | ZeroShotEvent | QatEvent | LayerProgress


@dataclasses.dataclass(frozen=True)
class QuantizeResult:
    """What `quantize_checkpoint` made: the file, how, every quantizer's range, and the run record
    beside the file (metrics.csv: one row per fine-tuning epoch of the zero-shot methods, else one per
    quantizer)."""

    path: Path | None
    method: str
    recipe: QuantRecipe
    quantizers: list[QuantizerSummary]
    info: dict[str, Any]
    model: nn.Module = dataclasses.field(repr=False, compare=False)
    metrics: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form (without the model)."""
        return {
            "out": str(self.path) if self.path is not None else None,
            "metrics": str(self.metrics) if self.metrics is not None else None,
            "method": self.method,
            "recipe": self.recipe.to_dict(),
            "quantization": self.info,
            "quantizers": [q.to_dict() for q in self.quantizers],
        }


def _counted(loader: Any, progress: Callable[[QuantizeEvent], None] | None) -> Iterator[Any]:
    total = len(loader)
    for i, batch in enumerate(loader, start=1):
        yield batch
        if progress is not None:
            progress(CalibProgress(i, total))


# ------------------------------------------------------------------------------ the command


def quantize_checkpoint(
    checkpoint: Path | str,
    out: Path | str | None,
    *,
    method: str = "ptq",
    recipe: QuantRecipe | None = None,
    calib: PtqData | None = None,
    zero_shot: ZeroShotPlan | None = None,
    qat: QatPlan | None = None,
    device: str = "auto",
    layers: LayerPlan | None = None,
    progress: Callable[[QuantizeEvent], None] | None = None,
) -> QuantizeResult:
    """Quantize the FP model of `checkpoint` by `recipe` (default QuantRecipe()) and write the quantized
    checkpoint to `out` (None keeps the model in memory only; under torchrun only rank 0 writes).
    `layers`: the sensitivity report and the fallback of layers to float after calibration (control.py);
    the recipe written (and returned) then holds a "skip" rule per layer returned to float.

    method "ptq": calibrate on the real images of `calib`, on `device`.
    method "intraq" / "bnstats": zero-shot, no real image is read; `zero_shot` (default ZeroShotPlan())
    says where the synthetic images come from and how the student is calibrated and fine-tuned (the
    devices and seeds of its configs apply).
    method "qat" / "odm": quantization-aware training on the real data of `qat` (required), resumable
    from the state beside `out` (plan.qat_state_path), under torchrun with DDP.

    Returns a QuantizeResult. Raises QuantizationError for a bad method/option combination (check_plan,
    worded with the CLI's flags), an `out` that is the checkpoint itself or an already quantized
    checkpoint; DataError for a missing --calib-synthetic file; and what load_checkpoint, the data
    sets, ptq and the zero-shot functions raise.
    """
    _check_types(calib, zero_shot, qat)
    # a calibration cache stands for the images it was collected on (PtqData checks it exists)
    images = None if calib is None else calib.source if calib.source is not None else calib.cache
    check_plan(method, images, plan_flags(zero_shot), data=qat.data if qat is not None else None)
    check_layer_plan(method, layers, calib, {"--calib-cache"} if calib is not None and calib.cache else ())
    recipe = recipe or QuantRecipe()
    checkpoint = Path(checkpoint)
    if out is not None and Path(out).resolve() == checkpoint.resolve():
        raise QuantizationError(f"--out {out} would overwrite the FP checkpoint; choose another path")
    loaded = load_checkpoint(checkpoint)
    if loaded.extra.get(QUANT_RECIPE_KEY):
        raise QuantizationError(f"{checkpoint} is already quantized; quantize the FP checkpoint it came from")
    task = get_model_info(loaded.arch).task
    if task == "autoencode" and method != "ptq":
        raise QuantizationError(
            f"--method {method} is not for autoencoders; {checkpoint} is "
            f"a {task!r} model ({loaded.arch}): use --method ptq --calib DIR|cifar10"
        )
    if task == "sr" and method not in QAT:
        raise QuantizationError(
            f"{checkpoint} is a {task} model ({loaded.arch}); --method {method} is for classifiers: quantize it with "
            "--method qat or odm and --data (e.g. --data sr)"
        )
    recipe = with_task_rules(recipe, task)
    source = {
        "checkpoint": str(checkpoint),
        "arch": loaded.arch,
        "epoch": loaded.extra.get("epoch"),
        "val": loaded.extra.get("val"),
    }
    info: dict[str, Any] = {"method": method, "source": source}
    epochs: list[ZeroShotEpochEnd] = []
    if method == "ptq":
        qmodel, info["ptq"] = _ptq(loaded, recipe, calib, device, progress)  # type: ignore[arg-type]
    elif method in QAT:
        qmodel, info["qat"] = _qat(loaded, recipe, method, task, qat, out, progress)  # type: ignore[arg-type]
        recipe = recipe_of(qmodel) or recipe  # with the offsets ODM chose
    else:
        plan = zero_shot or ZeroShotPlan()
        qmodel, zero_shot_info = _zero_shot(checkpoint, loaded, recipe, method, plan, progress, epochs)
        info.update(zero_shot_info)
    if layers is not None and layers.active:
        base = Path(out).with_suffix("") if out is not None and detect_env().is_main else None
        info["layers"], _, _ = apply_layer_plan(
            loaded,
            qmodel,
            layers,
            calib,
            report_base=base,
            progress=progress,  # type: ignore[arg-type]
        )
        recipe = recipe_of(qmodel) or recipe
    qmodel = qmodel.cpu().eval()
    summary = quantization_summary(qmodel)
    written = metrics = None
    if out is not None and detect_env().is_main:
        written = save_quantized(out, qmodel, loaded, recipe, info)
        metrics = write_metrics(metrics_path(written), epochs or summary)
        logger.info("wrote %s quantized checkpoint %s and %s", method, written, metrics.name)
    return QuantizeResult(written, method, recipe, summary, info, qmodel, metrics)


def _check_types(calib: object, zero_shot: object, qat: object = None) -> None:
    """Name the plan types when a caller passes the values quantize_checkpoint took before them."""
    if calib is not None and not isinstance(calib, PtqData):
        raise QuantizationError(
            f"quantize_checkpoint's calib takes PtqData(source, split, num_images, batch_size, workers, seed, cache), "
            f"got {type(calib).__name__}"
        )
    if zero_shot is not None and not isinstance(zero_shot, ZeroShotPlan):
        raise QuantizationError(
            "quantize_checkpoint's zero_shot takes ZeroShotPlan(synthetic, synth, fine_tune, calib_synthetic), "
            f"got {type(zero_shot).__name__}"
        )
    if qat is not None and not isinstance(qat, QatPlan):
        raise QuantizationError(
            f"quantize_checkpoint's qat takes QatPlan(data, config, resume), got {type(qat).__name__}"
        )


def _ptq(
    loaded: LoadedCheckpoint,
    recipe: QuantRecipe,
    calib: PtqData,
    device: str,
    progress: Callable[[QuantizeEvent], None] | None,
) -> tuple[nn.Module, dict[str, Any]]:
    """(quantized model, what was drawn): PTQ of the loaded FP model on `calib`'s images (through the
    calibration cache `calib.cache` when given)."""
    teacher = loaded.model.to(resolve_device(device, local_rank=detect_env().local_rank))
    if calib.cache is not None:
        return ptq_through_cache(loaded, teacher, recipe, calib, lambda loader: _counted(loader, progress))
    loader, drawn = calibration_loader(
        loaded,
        calib.source,
        split=calib.split,
        num_images=calib.num_images,
        batch_size=calib.batch_size,
        seed=calib.seed,
        workers=calib.workers,
    )
    return ptq(teacher, recipe, _counted(loader, progress)), drawn


def _qat(
    loaded: LoadedCheckpoint,
    recipe: QuantRecipe,
    method: str,
    task: str,
    plan: QatPlan,
    out: Path | str | None,
    progress: Callable[[QuantizeEvent], None] | None,
) -> tuple[nn.Module, dict[str, Any]]:
    """(quantized model, info): QAT / ODM of the loaded FP model on `plan.data` (calibration/qat)."""
    config = plan.config
    if config.method != method:
        raise QuantizationError(
            f"QatPlan.config was made for method {config.method!r}, not {method!r}; use QatConfig(method={method!r}, ...)"
        )
    world = detect_env().world_size
    dataset, description = qat_dataset(loaded, plan.data, config.steps_per_epoch * config.batch_size * world)
    state = qat_state_path(out) if out is not None else None
    qmodel, info = qat_quantize(
        loaded.model,
        recipe,
        dataset,
        config,
        task=task,
        state_path=state,
        resume=plan.resume,
        progress=progress,  # type: ignore[arg-type]
    )
    info["data"] = {"source": str(plan.data), "description": description}
    return qmodel, info


def _zero_shot(
    checkpoint: Path,
    loaded: LoadedCheckpoint,
    recipe: QuantRecipe,
    method: str,
    plan: ZeroShotPlan,
    progress: Callable[[QuantizeEvent], None] | None,
    last_epoch: list[ZeroShotEpochEnd],
) -> tuple[nn.Module, dict[str, Any]]:
    """(quantized model, info): the synthetic set of `plan` (reused, continued or made), then
    calibration and KD fine-tuning on it, each fine-tuning epoch's end appended to `last_epoch`.
    info: calib_synthesis, synthesis, zero_shot, fine_tune."""
    teacher = loaded.model
    tune = plan.fine_tune
    info: dict[str, Any] = {}

    def relay(event: QuantizeEvent) -> None:
        if isinstance(event, ZeroShotEpochEnd):
            last_epoch.append(event)
        if progress is not None:
            progress(event)

    calib_data = None
    if plan.calib_synthetic is not None:
        path = plan.calib_synthetic
        if not path.is_file():
            raise DataError(
                f"--calib-synthetic {path} does not exist; make it first with "
                f"`dctq synthesize {checkpoint} --method bnstats --out {path}`"
            )
        calib_data = reused_synthetic(path, None, teacher)
        info["calib_synthesis"] = {**calib_data.config, "file": str(path), "images": len(calib_data)}
    path = plan.synthetic
    if path is not None and path.exists() and plan.synth is None:
        data = reused_synthetic(path, method, teacher)
        qmodel = distill_on_synthetic(
            teacher,
            recipe,
            data,
            tune,
            progress=relay,  # type: ignore[arg-type]
            calib_synthetic=calib_data,
        )
    else:
        synth = plan.synth or SynthConfig(method=method, seed=tune.seed, device=tune.device)
        if synth.method != method:
            raise QuantizationError(
                f"ZeroShotPlan.synth was made for method {synth.method!r}, not {method!r}; "
                f"use SynthConfig(method={method!r}, ...)"
            )
        if path is not None and path.exists():
            check_same_options(path, synth, teacher, detect_env().world_size)
        qmodel, data = zero_shot_quantize(
            teacher,
            recipe,
            synth,
            tune,
            synthetic_out=path,
            resume=path is not None,
            class_names=loaded.class_names or None,
            arch=loaded.arch,
            progress=relay,  # type: ignore[arg-type]
            calib_synthetic=calib_data,
        )
    info["synthesis"] = {**data.config, "file": str(path) if path else None, "images": len(data)}
    info["zero_shot"] = tune.to_dict()
    if last_epoch:
        info["fine_tune"] = dataclasses.asdict(last_epoch[-1])
    return qmodel, info
