"""What a fake-quant model must satisfy before it is exported: the quantization side of ONNX/TorchScript
export (deploy/export/ traces the model this returns).

Exported graphs carry Q/DQ pairs, and they leave out the weight clamp of the fake-quant kernels: so
every quantizer must be calibrated, and weights outside their quantizer's [-amax, amax] are clipped into
it first (ModelOpt keeps its export next to its quantizers for the same reason). By default only INT8
(W8A8) models export, the TensorRT contract. With `low_bit=True` a model below 8 bits exports too, on
its trained grid: every activation quantizer is a Clip to its low-bit interval before an int8 (uint8 for
unsigned and asymmetric grids) QuantizeLinear with the low-bit scale, and the clipped weights are int8
values inside [-2^(b-1)+1, 2^(b-1)-1], so any ONNX runtime computes exactly the simulated grid (INT4 Q/DQ
types exist only from opset 21 and cover 4 bits alone; 2 and 3 bits have no ONNX type at all).
"""

from __future__ import annotations

import copy
import logging

from torch import nn

from ...common.errors import QuantizationError
from .model import clip_weights, iter_quantizers, recipe_of
from .quantizer import QuantState

logger = logging.getLogger(__name__)


def prepare_for_export(model: nn.Module, *, low_bit: bool = False) -> nn.Module:
    """An eval-mode copy ready to trace: quantizers checked, INT8 only (unless `low_bit`), weights clipped
    to their ranges.

    A float model (no quantizers) comes back as itself, in eval mode.

    Raises QuantizationError for an uncalibrated or disabled quantizer, or a recipe below 8 bits
    without `low_bit` (the message names the option).
    """
    quantizers = list(iter_quantizers(model))
    if not quantizers:
        return model.eval()
    recipe = recipe_of(model)
    if recipe is not None and not recipe.exportable and not low_bit:
        raise QuantizationError(
            f"recipe W{recipe.weight_bits}A{recipe.act_bits} is below INT8, which TensorRT does not take; export it "
            "with --low-bit (Clip + int8 Q/DQ on the trained grid, for ONNX Runtime) or quantize at --bits w8a8"
        )
    for name, q in quantizers:
        if q.bits != 8 and not low_bit:
            raise QuantizationError(
                f"quantizer {name} has {q.bits} bits; only 8-bit quantizers export (or --low-bit)"
            )
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
