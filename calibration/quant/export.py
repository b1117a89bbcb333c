"""What a fake-quant model must satisfy before it is exported: the quantization side of ONNX/TorchScript
export (deploy/export/ traces the model this returns).

Exported graphs carry Q/DQ pairs only for INT8 quantizers, and they leave out the weight clamp of the
fake-quant kernels: so every quantizer must be calibrated and 8-bit, and weights outside their
quantizer's [-amax, amax] are clipped into it first (ModelOpt keeps its export next to its quantizers
for the same reason).
"""

from __future__ import annotations

import copy
import logging

from torch import nn

from ...common.errors import QuantizationError
from .model import clip_weights, iter_quantizers, recipe_of
from .quantizer import QuantState

logger = logging.getLogger(__name__)


def prepare_for_export(model: nn.Module) -> nn.Module:
    """An eval-mode copy ready to trace: quantizers checked, INT8 only, weights clipped to their ranges.

    A float model (no quantizers) comes back as itself, in eval mode.

    Raises QuantizationError for an uncalibrated or disabled quantizer, or a recipe below 8 bits
    (simulated only).
    """
    quantizers = list(iter_quantizers(model))
    if not quantizers:
        return model.eval()
    recipe = recipe_of(model)
    if recipe is not None and not recipe.exportable:
        raise QuantizationError(
            f"recipe W{recipe.weight_bits}A{recipe.act_bits} is simulated in PyTorch only; only INT8 (W8A8) "
            "models export to ONNX Q/DQ"
        )
    for name, q in quantizers:
        if q.bits != 8:
            raise QuantizationError(f"quantizer {name} has {q.bits} bits; only 8-bit quantizers export")
        if q.state is QuantState.CALIBRATING or (q.state is QuantState.QUANTIZING and not q.is_calibrated):
            raise QuantizationError(
                f"quantizer {name} is not calibrated; run calibrate()/ptq() before exporting"
            )
    disabled = [name for name, q in quantizers if q.state is QuantState.DISABLED]
    if disabled:
        raise QuantizationError(
            f"{len(disabled)} quantizer(s) are disabled ({', '.join(disabled[:3])}...): calibrate the model, or "
            "export the float model instead"
        )
    model = copy.deepcopy(model).eval()
    changed = clip_weights(model)
    if changed:
        # exported graphs leave out the weight clamp, so weights outside [-amax, amax] must go first
        logger.info("clipped %d weight values into their quantizer ranges before export", changed)
    return model
