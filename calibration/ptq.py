"""Post-training quantization: quantize_model + calibrate over an iterable of batches.

Batches are what dctq's loaders yield (jpeg/dataset.py `collate_samples`):
- DCT: {"y": [N, 64, Hb, Wb] int16, "cbcr": [N, 128, Hb/2, Wb/2] int16 | None, "qt": [N, 3, 64], ...}
  -> model(y.float(), cbcr.float(), qt.float());
- RGB: {"x": [N, 3, H, W] float32, "qt": [N, 3, 64] (optional), ...} -> model(x, qt);
- a bare tensor -> model(x); a tuple/list -> model(*items).
Other keys ("label", "quality") are ignored. Tensors go to the model's device (jpeg/batch.py).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from ..common.errors import QuantizationError
from ..jpeg.batch import model_inputs
from .quant.model import calibrate, quantize_model
from .quant.recipe import QuantRecipe

logger = logging.getLogger(__name__)


def model_args(batch: Any, device: torch.device | str = "cpu") -> tuple[Any, ...]:
    """Positional arguments for the model from one calibration batch, on `device` (see the module
    docstring): `jpeg.batch.model_inputs` reporting in calibration's terms.

    Raises QuantizationError for a mapping with neither "y" nor "x", a DCT batch without "qt", or a
    non-tensor value.
    """
    return model_inputs(batch, device=device, source="calibration batch", error=QuantizationError)


def ptq(
    model: nn.Module,
    recipe: QuantRecipe | None = None,
    batches: Iterable[Any] = (),
    *,
    max_batches: int | None = None,
) -> nn.Module:
    """A quantized, calibrated copy of `model`: quantize_model(model, recipe) then calibrate on `batches`.

    max_batches: stop after this many batches (None = all). Raises QuantizationError when `batches`
    yields nothing, or the errors of quantize_model/calibrate.
    """
    if max_batches is not None and max_batches < 1:
        raise QuantizationError(f"max_batches must be >= 1, got {max_batches}")
    qmodel = quantize_model(model, recipe)
    device = next((p.device for p in qmodel.parameters()), torch.device("cpu"))
    seen = 0

    def forward_loop(m: nn.Module) -> None:
        nonlocal seen
        for batch in itertools.islice(batches, max_batches):
            m(*model_args(batch, device))
            seen += 1
        if seen == 0:
            raise QuantizationError("ptq got no calibration batches; the data set or loader is empty")

    calibrate(qmodel, forward_loop)
    logger.info("PTQ calibrated on %d batches", seen)
    return qmodel
