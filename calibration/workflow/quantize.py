"""`dctq quantize` as a library call: a quantized checkpoint from an FP one, by PTQ on real images or
zero-shot (IntraQ / BN-statistics synthetic images and KD fine-tuning). What the file holds and how it
is rebuilt on load: calibration/quant/checkpoint.py.

    result = quantize_checkpoint("best.pt", "q.pt", method="ptq", recipe=build_recipe(bits="w8a8"),
                                 calib="cifar10", num_images=512)
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from torch import nn

from ...common.errors import DataError, QuantizationError
from ...models.checkpoint import load_checkpoint
from ..distributed import detect_env, resolve_device
from ..ptq import ptq
from ..quant.checkpoint import QUANT_RECIPE_KEY, save_quantized
from ..quant.model import QuantizerSummary, quantization_summary
from ..quant.recipe import QuantRecipe
from ..zeroshot.config import SynthConfig, SynthEvent
from ..zeroshot.distill import distill_on_synthetic, zero_shot_quantize
from ..zeroshot.finetune_config import ZeroShotConfig, ZeroShotEpochEnd, ZeroShotEvent
from .data import calibration_loader, check_same_options, reused_synthetic

logger = logging.getLogger(__name__)

METHODS = ("ptq", "intraq", "bnstats")
"""ptq: calibrate on real images; intraq / bnstats: zero-shot (synthetic images, KD fine-tuning)."""


# ------------------------------------------------------------------------------ the command


@dataclasses.dataclass(frozen=True)
class CalibProgress:
    """PTQ calibration: `batch` of `batches` real-image batches done."""

    batch: int
    batches: int


QuantizeEvent = CalibProgress | SynthEvent | ZeroShotEvent


@dataclasses.dataclass(frozen=True)
class QuantizeResult:
    """What `quantize_checkpoint` made: the file, how, and every quantizer's range."""

    path: Path | None
    method: str
    recipe: QuantRecipe
    quantizers: list[QuantizerSummary]
    info: dict[str, Any]
    model: nn.Module = dataclasses.field(repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (without the model)."""
        return {
            "out": str(self.path) if self.path is not None else None,
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


def quantize_checkpoint(
    checkpoint: Path | str,
    out: Path | str | None,
    *,
    method: str = "ptq",
    recipe: QuantRecipe | None = None,
    calib: str | Path | None = None,
    calib_split: str = "train",
    num_images: int = 512,
    batch_size: int = 64,
    workers: int = 0,
    seed: int = 0,
    device: str = "auto",
    synthetic: Path | str | None = None,
    synth_config: SynthConfig | None = None,
    zero_shot: ZeroShotConfig | None = None,
    calib_synthetic: Path | str | None = None,
    progress: Callable[[QuantizeEvent], None] | None = None,
) -> QuantizeResult:
    """Quantize the FP model of `checkpoint` by `recipe` and write the quantized checkpoint to `out`.

    method "ptq": calibrate on `num_images` images (seeded by `seed`) of `calib` ("cifar10" or an
    ImageFolder), from its training split by default (the FP checkpoint's validation split stays
    unseen), in batches of `batch_size`, on `device`.
    method "intraq" / "bnstats": zero-shot, no real image is read (`calib` must be None). The
    synthetic set is `synthetic` when that file exists and `synth_config` is None (reused as made
    by `dctq synthesize`), else made with `synth_config` (method set to `method`) and, when
    `synthetic` is given, written there (a finished file with the same options is reused, a partial
    one continued). Then calibration and KD fine-tuning with `zero_shot` (their devices/seeds apply).
    `calib_synthetic`: a finished synthetic file of the same model (any method) to calibrate the
    activation ranges on instead, as IntraQ's code does with BN-statistics generator images.
    out: None keeps the model in memory only. Under torchrun only rank 0 writes.

    Returns a QuantizeResult. Raises QuantizationError for a bad method/option combination, and what
    load_checkpoint, the data sets, ptq and the zero-shot functions raise.
    """
    if method not in METHODS:
        raise QuantizationError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    recipe = recipe or QuantRecipe()
    checkpoint = Path(checkpoint)
    if out is not None and Path(out).resolve() == checkpoint.resolve():
        raise QuantizationError(f"--out {out} would overwrite the FP checkpoint; choose another path")
    if method == "ptq":
        if calib is None:
            raise QuantizationError(
                "--method ptq calibrates on real images: give --calib DIR (an ImageFolder of JPEGs) or "
                "--calib cifar10; for zero-shot quantization without data use --method intraq or bnstats"
            )
        if any(v is not None for v in (synthetic, synth_config, zero_shot, calib_synthetic)):
            raise QuantizationError(
                "--synthetic, --calib-synthetic, the synthesis options and --epochs belong to "
                "--method intraq / bnstats, not ptq"
            )
    elif calib is not None:
        raise QuantizationError(
            f"--method {method} is zero-shot: it reads no real image, so --calib {calib} cannot be used; "
            "drop --calib, or use --method ptq to calibrate on those images"
        )
    loaded = load_checkpoint(checkpoint)
    if loaded.extra.get(QUANT_RECIPE_KEY):
        raise QuantizationError(f"{checkpoint} is already quantized; quantize the FP checkpoint it came from")
    teacher = loaded.model
    source = {
        "checkpoint": str(checkpoint),
        "arch": loaded.arch,
        "epoch": loaded.extra.get("epoch"),
        "val": loaded.extra.get("val"),
    }
    info: dict[str, Any] = {"method": method, "source": source}
    if method == "ptq":
        loader, info["ptq"] = calibration_loader(
            loaded,
            calib,  # type: ignore[arg-type]
            split=calib_split,
            num_images=num_images,
            batch_size=batch_size,
            seed=seed,
            workers=workers,
        )
        teacher.to(resolve_device(device, detect_env()))
        qmodel = ptq(teacher, recipe, _counted(loader, progress))
    else:
        zero_shot = zero_shot or ZeroShotConfig()
        last_epoch: list[ZeroShotEpochEnd] = []

        def relay(event: QuantizeEvent) -> None:
            if isinstance(event, ZeroShotEpochEnd):
                last_epoch.append(event)
            if progress is not None:
                progress(event)

        calib_data = None
        if calib_synthetic is not None:
            calib_path = Path(calib_synthetic)
            if not calib_path.is_file():
                raise DataError(
                    f"--calib-synthetic {calib_path} does not exist; make it first with "
                    f"`dctq synthesize {checkpoint} --method bnstats --out {calib_path}`"
                )
            calib_data = reused_synthetic(calib_path, None, teacher)
            info["calib_synthesis"] = {
                **calib_data.config,
                "file": str(calib_path),
                "images": len(calib_data),
            }
        path = Path(synthetic) if synthetic is not None else None
        if path is not None and path.exists() and synth_config is None:
            data = reused_synthetic(path, method, teacher)
            qmodel = distill_on_synthetic(
                teacher,
                recipe,
                data,
                zero_shot,
                progress=relay,  # type: ignore[arg-type]
                calib_synthetic=calib_data,
            )
        else:
            synth_config = dataclasses.replace(synth_config or SynthConfig(), method=method)
            if path is not None and path.exists():
                check_same_options(path, synth_config, teacher, detect_env().world_size)
            qmodel, data = zero_shot_quantize(
                teacher,
                recipe,
                synth_config,
                zero_shot,
                synthetic_out=path,
                resume=path is not None,
                class_names=loaded.class_names or None,
                arch=loaded.arch,
                progress=relay,  # type: ignore[arg-type]
                calib_synthetic=calib_data,
            )
        info["synthesis"] = {**data.config, "file": str(path) if path else None, "images": len(data)}
        info["zero_shot"] = zero_shot.to_dict()
        if last_epoch:
            info["fine_tune"] = dataclasses.asdict(last_epoch[-1])
    qmodel = qmodel.cpu().eval()
    written = None
    if out is not None and detect_env().is_main:
        written = save_quantized(out, qmodel, loaded, recipe, info)
        logger.info("wrote %s quantized checkpoint %s", method, written)
    return QuantizeResult(written, method, recipe, quantization_summary(qmodel), info, qmodel)
