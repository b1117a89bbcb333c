"""`dctq adapt-bn` as a library call: a checkpoint whose BatchNorm statistics are re-estimated on training
images re-compressed at the deployment JPEG quality (calibration/bn_stats.py); weights, architecture, class
names and the training record are kept, so the result is quantized and exported like any FP checkpoint.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from ...common.errors import DataError, ModelError
from ...models.checkpoint import load_checkpoint, save_checkpoint
from ..bn_stats import batch_norms, reestimate_bn
from ..quant.checkpoint import QUANT_RECIPE_KEY
from .data import calibration_loader
from .plan import PtqData

logger = logging.getLogger(__name__)

BN_ADAPT_KEY = "bn_adapt"
"""extra[BN_ADAPT_KEY] of an adapted checkpoint: the quality and the images its statistics come from."""


@dataclasses.dataclass(frozen=True)
class AdaptResult:
    """What `adapt_bn_checkpoint` wrote: the file, the quality, and what the statistics were measured on."""

    path: Path
    quality: int
    layers: int
    images: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (`dctq adapt-bn --json`)."""
        return {"out": str(self.path), "quality": self.quality, "layers": self.layers, "images": self.images}


def adapt_bn_checkpoint(
    checkpoint: Path | str, out: Path | str, images: PtqData, *, quality: int
) -> AdaptResult:
    """Write to `out` the FP checkpoint `checkpoint` with BatchNorm statistics re-estimated on `images`
    (drawn as PTQ draws its calibration images, from the run's training split by default) re-compressed
    at JPEG `quality`. Nothing but the running statistics changes; extra[BN_ADAPT_KEY] records how.

    Raises:
        DataError: a quality outside 1..100, `out` naming the input file, bad image options or data.
        ModelError: an unreadable checkpoint, a quantized one (adapt the FP model, then quantize), a QSAM
            (QABN) one (it has per-quality statistics already), or a model without BatchNorm.
    """
    checkpoint, out = Path(checkpoint), Path(out)
    if not 1 <= quality <= 100:
        raise DataError(f"--quality must be a JPEG quality in 1..100, got {quality}")
    if out.resolve() == checkpoint.resolve():
        raise DataError(f"--out {out} would overwrite the input checkpoint; choose another path")
    loaded = load_checkpoint(checkpoint)
    if loaded.extra.get(QUANT_RECIPE_KEY):
        raise ModelError(
            f"{checkpoint} is quantized; adapt the FP checkpoint it came from, then quantize the result"
        )
    if loaded.extra.get("qabn"):
        raise ModelError(
            f"{checkpoint} is a QSAM (QABN) model: it keeps BatchNorm statistics per base quality already"
        )
    if not batch_norms(loaded.model):
        raise ModelError(f"{checkpoint} has no BatchNorm layers, so there are no statistics to adapt")
    loader, drawn = calibration_loader(
        loaded,
        images.source,
        split=images.split,
        num_images=images.num_images,
        batch_size=images.batch_size,
        seed=images.seed,
        workers=images.workers,
        quality=quality,
        split_flag="--split",
    )
    adapted = reestimate_bn(loaded.model, loader)
    record = {**drawn, "source": str(checkpoint)}
    written = save_checkpoint(
        out,
        adapted,
        arch=loaded.arch,
        arch_kwargs=loaded.arch_kwargs,
        class_names=loaded.class_names,
        extra={**loaded.extra, BN_ADAPT_KEY: record},
    )
    logger.info(
        "wrote %s: BatchNorm statistics at quality %d from %d images", written, quality, drawn["images"]
    )
    return AdaptResult(written, quality, len(batch_norms(adapted)), record)
