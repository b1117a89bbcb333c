"""Per-layer sensitivity of a calibrated model: which quantized layers cost the accuracy.

On held-out batches (labelled, kept in memory) the quantized model runs
- as it is (every layer quantized) and, as the reference, the FP model;
- with one layer at a time quantized and every other in float ("alone": what that layer costs by itself);
- with one layer at a time left in float and every other quantized ("in float": what returning it gains).
Both come from switching quantizer states (quant/layers.py): PTQ ranges are measured on the float
network, so this is exactly re-quantizing with "skip" rules, with no new calibration. For a fine-tuned
(zero-shot) student "in float" runs that layer's fine-tuned weights in float.

Scores per run (`Score`): top-1 against the labels, top-1 agreement with the FP model and the SQNR of the
logits against the FP logits (10 log10 of signal over error power, dB). Layers are ranked by what leaving
them in float gains in the chosen metric ("accuracy": top-1 points, ties broken by SQNR; "sqnr": dB),
most sensitive first: the order the automatic fallback returns them in.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ...common.errors import QuantizationError
from ..ptq import model_args
from ..quant.layers import layers_in_float, only_layers_quantized, quantized_layers

logger = logging.getLogger(__name__)

METRICS = ("accuracy", "sqnr")


def finite(value: float) -> float | None:
    """`value`, or None where it is inf/nan (an exact match has infinite SQNR; JSON has no inf)."""
    return value if math.isfinite(value) else None


@dataclasses.dataclass(frozen=True)
class Score:
    """One run over the held-out batches: top1 and agreement in [0, 1], sqnr_db of the logits vs FP."""

    top1: float
    agreement: float
    sqnr_db: float

    def value(self, metric: str) -> float:
        """top-1 in points (metric "accuracy") or SQNR in dB ("sqnr")."""
        return 100 * self.top1 if metric == "accuracy" else self.sqnr_db


@dataclasses.dataclass(frozen=True)
class LayerSensitivity:
    """One layer: its quantizers, the score with it alone quantized and with it alone left in float."""

    layer: str
    quantizers: tuple[str, ...]
    alone: Score
    in_float: Score


@dataclasses.dataclass(frozen=True)
class SensitivityReport:
    """Every quantized layer, most sensitive first (see the module docstring)."""

    metric: str
    images: int
    fp: Score
    quantized: Score
    layers: tuple[LayerSensitivity, ...]

    def gain(self, row: LayerSensitivity, metric: str | None = None) -> float:
        """What leaving `row`'s layer in float gains over the fully quantized model (points or dB)."""
        m = metric or self.metric
        return row.in_float.value(m) - self.quantized.value(m)

    def loss(self, row: LayerSensitivity, metric: str | None = None) -> float:
        """What quantizing `row`'s layer alone costs against FP (points or dB; dB of SQNR: inf - x)."""
        m = metric or self.metric
        return self.fp.value(m) - row.alone.value(m)

    def ranking(self) -> list[str]:
        """Layer names, most sensitive first."""
        return [row.layer for row in self.layers]

    def to_dict(self) -> dict[str, Any]:
        """JSON form: scores in % and dB; per layer the gain in float and the loss alone, in both metrics."""

        def score(s: Score) -> dict[str, float | None]:
            return {
                "top1": 100 * s.top1,
                "agreement": 100 * s.agreement,
                "sqnr_db": finite(s.sqnr_db),
            }

        return {
            "metric": self.metric,
            "images": self.images,
            "fp": score(self.fp),
            "quantized": score(self.quantized),
            "drop_points": 100 * (self.fp.top1 - self.quantized.top1),
            "layers": [
                {
                    "rank": i + 1,
                    "layer": row.layer,
                    "quantizers": list(row.quantizers),
                    "in_float": score(row.in_float),
                    "alone": score(row.alone),
                    "gain_in_float_points": self.gain(row, "accuracy"),
                    "gain_in_float_db": finite(self.gain(row, "sqnr")),
                    "loss_alone_points": self.loss(row, "accuracy"),
                    "sqnr_alone_db": finite(row.alone.sqnr_db),
                }
                for i, row in enumerate(self.layers)
            ],
        }


@dataclasses.dataclass(frozen=True)
class HeldOut:
    """Labelled held-out batches in memory and the FP model's logits on them (computed once)."""

    batches: tuple[Any, ...]
    labels: torch.Tensor
    fp_logits: torch.Tensor

    @property
    def images(self) -> int:
        return int(self.labels.numel())


def _logits(model: nn.Module, batches: Sequence[Any]) -> torch.Tensor:
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return torch.cat([model(*model_args(b, device)).float().cpu() for b in batches])
    finally:
        model.train(was_training)


def held_out(fp_model: nn.Module, batches: Sequence[Any]) -> HeldOut:
    """The held-out set: `batches` (dicts with "label", as dctq's loaders yield) and the FP logits.

    Raises QuantizationError for no batches or batches without labels.
    """
    batches = tuple(batches)
    if not batches:
        raise QuantizationError("the held-out set is empty; give --val images (or more --val-images)")
    if not all(isinstance(b, dict) and "label" in b for b in batches):
        raise QuantizationError("held-out batches need labels ('label'), as dctq's data loaders give them")
    labels = torch.cat([torch.as_tensor(b["label"]) for b in batches])
    return HeldOut(batches, labels, _logits(fp_model, batches))


def score(model: nn.Module, data: HeldOut) -> Score:
    """Top-1, agreement with FP and logit SQNR of `model` on the held-out set."""
    logits = _logits(model, data.batches)
    pred = logits.argmax(dim=1)
    ref = data.fp_logits
    noise = float((logits - ref).pow(2).mean())
    signal = float(ref.pow(2).mean())
    sqnr = math.inf if noise == 0 else 10 * math.log10(signal / noise) if signal > 0 else -math.inf
    return Score(
        top1=float((pred == data.labels).float().mean()),
        agreement=float((pred == ref.argmax(dim=1)).float().mean()),
        sqnr_db=sqnr,
    )


def rank_key(
    report_fp: Score, quantized: Score, metric: str
) -> Callable[[LayerSensitivity], tuple[float, float]]:
    """Sort key, most sensitive first: the gain in float in `metric`, then in SQNR (ties of accuracy)."""

    def key(row: LayerSensitivity) -> tuple[float, float]:
        gain = row.in_float.value(metric) - quantized.value(metric)
        return (-gain, -(row.in_float.sqnr_db - quantized.sqnr_db))

    return key


def layer_sensitivity(
    qmodel: nn.Module,
    data: HeldOut,
    *,
    metric: str = "accuracy",
    layers: Sequence[str] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> SensitivityReport:
    """The sensitivity of every quantized layer of the calibrated `qmodel` (or of `layers`) on `data`.

    progress(done, total, layer) after each layer. Raises QuantizationError for an unknown metric, a model
    without quantized layers or an unknown layer name.
    """
    if metric not in METRICS:
        raise QuantizationError(f"--sensitivity-metric must be one of {', '.join(METRICS)}, got {metric!r}")
    found = quantized_layers(qmodel)
    if not found:
        raise QuantizationError("the model has no quantized layers to rank")
    names = list(layers) if layers is not None else list(found)
    fp = Score(float((data.fp_logits.argmax(1) == data.labels).float().mean()), 1.0, math.inf)
    quantized = score(qmodel, data)
    rows = []
    for i, name in enumerate(names, start=1):
        with only_layers_quantized(qmodel, [name]):
            alone = score(qmodel, data)
        with layers_in_float(qmodel, [name]):
            in_float = score(qmodel, data)
        rows.append(LayerSensitivity(name, tuple(q.label for q in found[name]), alone, in_float))
        logger.debug("%s: alone %.2f%%, in float %.2f%%", name, 100 * alone.top1, 100 * in_float.top1)
        if progress is not None:
            progress(i, len(names), name)
    rows.sort(key=rank_key(fp, quantized, metric))
    return SensitivityReport(metric, data.images, fp, quantized, tuple(rows))
