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

from ...common.devices import resolve_device
from ...common.errors import DataError, QuantizationError
from ...models.checkpoint import load_checkpoint
from ..calibrators.registry import calibrator_class
from ..distributed import detect_env
from ..ptq import ptq
from ..quant.checkpoint import QUANT_RECIPE_KEY, save_quantized
from ..quant.model import QuantizerSummary, quantization_summary
from ..quant.recipe import PRESETS, QuantRecipe, get_recipe
from ..zeroshot.config import SynthConfig, SynthEvent
from ..zeroshot.distill import quantize_zero_shot, zero_shot_quantize
from ..zeroshot.finetune_config import ZeroShotConfig, ZeroShotEpochEnd, ZeroShotEvent
from .data import calibration_loader, check_same_options, reused_synthetic

logger = logging.getLogger(__name__)

METHODS = ("ptq", "intraq", "bnstats")
"""ptq: calibrate on real images; intraq / bnstats: zero-shot (synthetic images, KD fine-tuning)."""


# ---------------------------------------------------------------------------------- recipes


def parse_bits(bits: str) -> tuple[int, int]:
    """'w8a8' -> (8, 8), 'w4a4' -> (4, 4); widths 2..8. Raises QuantizationError naming --bits."""
    text = bits.strip().lower()
    try:
        if not text.startswith("w") or "a" not in text:
            raise ValueError
        w, a = text[1:].split("a", 1)
        weight_bits, act_bits = int(w), int(a)
    except ValueError:
        raise QuantizationError(f"--bits takes wNaM like w8a8, w5a5, w4a4 or w3a3, got {bits!r}") from None
    if not (2 <= weight_bits <= 8 and 2 <= act_bits <= 8):
        raise QuantizationError(f"--bits {bits}: weight and activation widths must be in 2..8")
    return weight_bits, act_bits


def build_recipe(
    preset: str | None = None,
    bits: str | None = None,
    calibrator: str | None = None,
    add_inputs: str | None = None,
) -> QuantRecipe:
    """The recipe of `dctq quantize --recipe PRESET --bits wNaM --calibrator NAME` (each optional).

    Without a preset, `bits` picks the preset of that name when there is one (w4a4, w3a3), else
    "int8" for w8a8 and the low-bit settings (MSE calibration, unsigned post-ReLU grids) below 8 bits.
    `bits` then overrides the preset's widths (unsigned activation grids exactly when act_bits < 8),
    and `calibrator` its calibrator (keeping the preset's calibrator options only for the same one);
    `add_inputs` ("residual" or "both") which inputs of residual Adds are quantized.
    Raises QuantizationError for an unknown preset, calibrator or bit width.
    """
    widths = parse_bits(bits) if bits is not None else None
    if preset is not None:
        base = get_recipe(preset)
    elif widths is None or widths == (8, 8):
        base = PRESETS["int8"]
    else:
        base = PRESETS.get(bits.strip().lower()) or QuantRecipe(calibrator="mse")  # type: ignore[union-attr]
    changes: dict[str, Any] = {}
    if widths is not None:
        changes.update(weight_bits=widths[0], act_bits=widths[1], act_unsigned=widths[1] < 8)
    if calibrator is not None and calibrator != base.calibrator:
        calibrator_class(calibrator)  # an unknown name fails with close matches
        changes.update(calibrator=calibrator, calibrator_args=())
    if add_inputs is not None:
        changes.update(add_inputs=add_inputs)
    return dataclasses.replace(base, **changes) if changes else base


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
        teacher.to(resolve_device(device, local_rank=detect_env().local_rank))
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
            qmodel = zero_shot_quantize(
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
                check_same_options(path, synth_config)
            qmodel, data = quantize_zero_shot(
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
