"""TensorQuantizer: symmetric fake quantization (zero point 0) of one tensor, with a calibration mode.

Grid: amax is the largest representable magnitude, scale = amax / qmax; signed integers in
[qmin, qmax] with qmax = 2^(b-1) - 1 and qmin = -qmax ("narrow range", int8 [-127, 127]) or
-qmax - 1 (full range, int8 [-128, 127]); unsigned grids [0, 2^b - 1] exist for simulated low bit
widths only. TensorRT requires INT8 *weights* in [-127, 127] (a sign-symmetric grid; activations may
use -128), so weight quantizers are narrow. The exporters only accept the int8 range (-128, 127) for
`fake_quantize_*`, so an 8-bit narrow quantizer clamps to [-amax, amax] first and then calls the
(-128, 127) op: identical numbers. A weight quantizer leaves that clamp out of exported graphs (it
would stay as Max/Min nodes on every weight): its weights already lie in [-amax, amax] (max
calibration gives that; `quantize_model.clip_weights` restores it after training scales).
Activations default to the full int8 range, exactly what ONNX QuantizeLinear computes, so the ONNX
graph needs no extra Clip and matches PyTorch bit for bit.

States: DISABLED (identity), CALIBRATING (identity, feeds the calibrator), QUANTIZING (fake quant).
8-bit quantizers run `torch.fake_quantize_per_{tensor,channel}_affine`, which both ONNX exporters
turn into QuantizeLinear/DequantizeLinear; lower bit widths run the same ops with their own
quant_min/quant_max (simulation only, not exportable). Gradients: straight-through inside the
range, zero outside (the ops' own backward). A learnable quantizer holds amax as a Parameter and,
while training, uses the LSQ formulation (Esser et al. 2020): round with a straight-through
estimator and the step's gradient scaled by 1 / sqrt(N * qmax), N the elements per sample (or per
channel); or, with gradient "pams", PAMS's learnable clip (quant/learnable.py). In eval and export it
runs the same ops as above.

QAT additions: an *asymmetric* quantizer (activations below 8 bits) holds a second bound `amin` and the
unsigned grid [0, 2^b - 1] with a zero point, so [amin, amax] need not be centred on 0 (ORT takes its
uint8 Q/DQ; TensorRT does not). Quantizers below 8 bits clamp to their grid's interval and then call the
ops with the full int8 (or uint8) range: the same numbers, and a graph of Clip -> QuantizeLinear ->
DequantizeLinear that any ONNX runtime computes exactly on the trained low-bit grid (weights are clipped
in place instead, `model.clip_weights`).
"""

from __future__ import annotations

import enum
import logging
import math
from typing import Any

import torch
from torch import nn

from ...common.errors import QuantizationError
from ..calibrators.base import Calibrator, qmax_for
from ..calibrators.statistics import ActivationStatistics
from .learnable import asymmetric_grid, pams_quantize

logger = logging.getLogger(__name__)

_MIN_AMAX = 1e-8  # an all-zero input calibrates to amax 0; keep the scale positive
GRADIENTS = ("lsq", "pams")
"""How a learnable range trains (quant/learnable.py)."""


class QuantState(str, enum.Enum):
    DISABLED = "disabled"
    CALIBRATING = "calibrating"
    QUANTIZING = "quantizing"


def _register_fake_kernels() -> None:
    """Give the fake-quant ops shape-only ("fake") kernels so torch.export works with a dynamic batch.

    Without them torch.export (and so the dynamo ONNX exporter) fails with UnsupportedOperatorException
    as soon as a dimension is symbolic (measured on torch 2.13). Idempotent; skipped where torch
    already provides one.
    """

    def _out_and_mask(x: torch.Tensor, *args: Any) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.empty_like(x), torch.empty_like(x, dtype=torch.bool)

    for op in (
        "aten::_fake_quantize_per_tensor_affine_cachemask_tensor_qparams",
        "aten::fake_quantize_per_channel_affine_cachemask",
    ):
        if torch._C._dispatch_has_kernel_for_dispatch_key(op, "Meta"):
            continue
        try:
            torch.library.register_fake(op)(_out_and_mask)
        except RuntimeError as exc:  # already registered (module reloaded) or provided by torch
            logger.debug("fake kernel for %s not registered: %s", op, exc)


_register_fake_kernels()


def _is_exporting() -> bool:
    return bool(torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export() or torch.jit.is_tracing())


class TensorQuantizer(nn.Module):
    """Fake-quantizes x: [N, ...] per tensor, or per channel along `per_channel_axis` (weights: 0).

    bits: 2..8 (only 8 is exported). narrow_range: qmin = -qmax (True, weights) or -qmax - 1.
    unsigned: grid [0, 2^b - 1] (b < 8 only); None = decide at the end of calibration, unsigned when
    no negative value was seen (post-ReLU inputs at low bit widths). `label` names the quantizer in
    messages (set by quantize_model). is_weight: quantizes a parameter (see module docstring on
    export). amax: [] or [C] float32, empty until calibrated or loaded; the buffer `grid` (int32
    [bits, unsigned, narrow_range]) saves the grid with it in state dicts. asymmetric (bits < 8, per
    tensor): a second bound `amin` and the grid [0, 2^b - 1] with a zero point (module docstring).
    gradient: how a learnable range trains, "lsq" (symmetric grids) or "pams" (any grid).
    """

    def __init__(
        self,
        bits: int = 8,
        per_channel_axis: int | None = None,
        learnable: bool = False,
        *,
        narrow_range: bool = True,
        unsigned: bool | None = False,
        calibrator: Calibrator | None = None,
        label: str = "",
        is_weight: bool = False,
        asymmetric: bool = False,
        gradient: str = "lsq",
    ) -> None:
        super().__init__()
        if asymmetric and (bits == 8 or per_channel_axis is not None or unsigned):
            raise QuantizationError(
                f"quantizer {label or '?'}: asymmetric grids are per tensor, signed-free and below 8 bits "
                "(INT8 stays symmetric for TensorRT)"
            )
        if gradient not in GRADIENTS:
            raise QuantizationError(
                f"quantizer {label or '?'}: gradient must be one of {GRADIENTS}, got {gradient!r}"
            )
        if not isinstance(bits, int) or not 2 <= bits <= 8:
            raise QuantizationError(
                f"quantizer {label or '?'}: bits must be an integer in 2..8, got {bits!r}"
            )
        if unsigned is not False and bits == 8:
            raise QuantizationError(
                f"quantizer {label or '?'}: 8-bit quantizers are signed (TensorRT takes int8 only); "
                "unsigned grids are for simulated bit widths below 8"
            )
        self.bits = bits
        self.axis = per_channel_axis
        self.narrow_range = narrow_range
        self.unsigned = bool(unsigned)
        self.auto_unsigned = unsigned is None
        self.calibrator = calibrator
        self.label = label
        self.is_weight = is_weight
        self.state = QuantState.DISABLED
        self._saw_negative = False
        self.learnable = learnable
        self.asymmetric = asymmetric
        self.gradient = gradient
        if learnable:
            self.amax = nn.Parameter(torch.empty(0))
        else:
            self.register_buffer("amax", torch.empty(0))
        if asymmetric:
            if learnable:
                self.amin = nn.Parameter(torch.empty(0))
            else:
                self.register_buffer("amin", torch.empty(0))
        self._seen = [math.inf, -math.inf]  # smallest and largest value seen while calibrating
        self.register_buffer("grid", torch.zeros(3, dtype=torch.int32))
        self._sync_grid()

    def _sync_grid(self) -> None:
        self.grid = torch.tensor(
            [self.bits, int(self.unsigned), int(self.narrow_range)],
            dtype=torch.int32,
            device=self.grid.device,
        )

    # -- grid ---------------------------------------------------------------------------------
    @property
    def qmax(self) -> int:
        return qmax_for(self.bits, self.unsigned or self.asymmetric)

    @property
    def qmin(self) -> int:
        if self.unsigned or self.asymmetric:
            return 0
        return -self.qmax if self.narrow_range else -self.qmax - 1

    @property
    def is_calibrated(self) -> bool:
        return self.amax.numel() > 0

    def extra_repr(self) -> str:
        axis = "per tensor" if self.axis is None else f"axis={self.axis}"
        grid = f"[{self.qmin}, {self.qmax}]"
        return f"bits={self.bits}, {axis}, grid={grid}, state={self.state.value}, learnable={self.learnable}"

    # -- state --------------------------------------------------------------------------------
    def set_amax(self, amax: torch.Tensor) -> None:
        """Set amax ([] or [C], > 0 after flooring at 1e-8) and switch to QUANTIZING."""
        value = torch.as_tensor(amax, dtype=torch.float32).detach()
        if not torch.isfinite(value).all():
            raise QuantizationError(f"quantizer {self.label}: amax must be finite, got {value.tolist()}")
        value = value.to(self.amax.device).clamp_min(_MIN_AMAX)
        with torch.no_grad():
            if isinstance(self.amax, nn.Parameter):
                self.amax.data = value.clone()
            else:
                self.amax = value.clone()
        self.state = QuantState.QUANTIZING

    def set_range(self, amin: torch.Tensor, amax: torch.Tensor) -> None:
        """Set both bounds of an asymmetric quantizer (amin < amax) and switch to QUANTIZING."""
        if not self.asymmetric:
            raise QuantizationError(
                f"quantizer {self.label}: set_range is for asymmetric quantizers; use set_amax"
            )
        lo = torch.as_tensor(amin, dtype=torch.float32).detach().to(self.amax.device)
        with torch.no_grad():
            if isinstance(self.amin, nn.Parameter):
                self.amin.data = lo.clone()
            else:
                self.amin = lo.clone()
        hi = torch.as_tensor(amax, dtype=torch.float32).detach().to(lo.device)
        self.set_amax(torch.maximum(hi, lo + 1e-6))

    def set_learnable(self, learnable: bool, gradient: str | None = None) -> None:
        """Turn the range (amax, and amin when asymmetric) into trainable Parameters (QAT after
        calibration) or back into buffers; `gradient` ("lsq" or "pams") says how it trains."""
        if gradient is not None:
            if gradient not in GRADIENTS:
                raise QuantizationError(f"gradient must be one of {GRADIENTS}, got {gradient!r}")
            self.gradient = gradient
        if learnable == self.learnable:
            return
        for name in ("amax", "amin") if self.asymmetric else ("amax",):
            value = getattr(self, name).detach().clone()
            delattr(self, name)
            if learnable:
                setattr(self, name, nn.Parameter(value))
            else:
                self.register_buffer(name, value)
        self.learnable = learnable

    def start_calibration(self) -> None:
        """Reset the calibrator and pass tensors through while observing them."""
        if self.calibrator is None:
            raise QuantizationError(f"quantizer {self.label} has no calibrator to calibrate with")
        self.calibrator.reset()
        self._saw_negative = False
        self._seen = [math.inf, -math.inf]
        self.state = QuantState.CALIBRATING

    def finish_calibration(self) -> torch.Tensor:
        """amax from the calibrator (deciding an automatic unsigned grid first); state -> QUANTIZING."""
        if self.calibrator is None or not self.calibrator.observed:
            raise QuantizationError(
                f"quantizer {self.label or '?'} observed no data during calibration: the forward loop "
                "never ran this layer; run it, or add a 'skip' rule for the layer to the recipe"
            )
        if self.auto_unsigned:
            self.unsigned = not self._saw_negative
            self.calibrator.unsigned = self.unsigned
            self._sync_grid()
        amax = self.calibrator.compute_amax()
        if self.asymmetric:
            # the calibrator's clipping of |x|, applied to each side of the observed interval
            lo = max(self._seen[0], -float(amax))
            hi = min(self._seen[1], float(amax))
            self.set_range(torch.tensor(min(lo, 0.0)), torch.tensor(max(hi, 1e-6)))
        else:
            self.set_amax(amax)
        return self.amax.detach()

    def calibrate_from(self, stats: ActivationStatistics) -> torch.Tensor:
        """Calibrate from cached statistics (calibrators/statistics.py) instead of observing data: the
        same amax, grid and state `start_calibration`, the forward passes and `finish_calibration` give."""
        self.start_calibration()
        self.calibrator.load_statistics(stats)  # type: ignore[union-attr]
        self._saw_negative = stats.negative
        return self.finish_calibration()

    # -- checkpoints --------------------------------------------------------------------------
    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):  # type: ignore[no-untyped-def]
        for name in ("amax", "amin") if self.asymmetric else ("amax",):
            incoming = state_dict.get(prefix + name)
            mine = getattr(self, name)
            if isinstance(incoming, torch.Tensor) and incoming.shape != mine.shape:
                # ranges are sized by calibration; a fresh model holds empty ones.
                mine.data = torch.empty(incoming.shape, dtype=mine.dtype, device=mine.device)
        grid = state_dict.get(prefix + "grid")
        if isinstance(grid, torch.Tensor) and grid.numel() == 3:
            bits, unsigned, narrow = (int(v) for v in grid.tolist())
            if bits != self.bits:
                raise QuantizationError(
                    f"quantizer {self.label or prefix.rstrip('.')}: the checkpoint was calibrated for {bits} bits, "
                    f"this model quantizes to {self.bits}; build it with the checkpoint's recipe"
                )
            self.unsigned, self.narrow_range = bool(unsigned), bool(narrow)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        if self.amax.numel() > 0:
            self.state = QuantState.QUANTIZING

    # -- forward ------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.state is QuantState.DISABLED:
            return x
        if self.state is QuantState.CALIBRATING:
            if self.calibrator is not None:
                self.calibrator.observe(x)
            if x.numel():
                lo, hi = torch.aminmax(x.detach().float())
                self._seen = [min(self._seen[0], float(lo)), max(self._seen[1], float(hi))]
                self._saw_negative = self._seen[0] < 0
            return x
        exporting = _is_exporting()
        if not exporting and self.amax.numel() == 0:
            raise QuantizationError(
                f"quantizer {self.label or '?'} has no amax: calibrate the model (calibrate/ptq) or load "
                "a calibrated checkpoint before running it quantized"
            )
        dtype = x.dtype
        xf = x.float() if dtype != torch.float32 else x
        if not exporting:
            self._check_channels(xf)
        if self.learnable and self.amax.requires_grad and torch.is_grad_enabled() and not exporting:
            out = self._pams(xf) if (self.gradient == "pams" or self.asymmetric) else self._lsq(xf)
        else:
            out = self._fake_quant(xf, exporting)
        return out.to(dtype) if dtype != torch.float32 else out

    def _view(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """[C] -> broadcastable along self.axis of x."""
        if self.axis is None:
            return t
        shape = [1] * x.dim()
        shape[self.axis % x.dim()] = -1
        return t.reshape(shape)

    def _check_channels(self, x: torch.Tensor) -> None:
        if self.axis is not None and self.amax.numel() != x.shape[self.axis]:
            raise QuantizationError(
                f"quantizer {self.label}: amax has {self.amax.numel()} channels but the tensor has "
                f"{x.shape[self.axis]} along axis {self.axis} (shape {list(x.shape)})"
            )

    def _grid(self, x: torch.Tensor, amax: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(scale, zero point, lo): the grid's step, zero point (float) and lowest value, viewed for x."""
        if self.asymmetric:
            lo = self.amin if self.learnable else self.amin.detach()
            scale, zero = asymmetric_grid(lo, amax, self.bits)
            return scale, zero, (self.qmin - zero) * scale
        scale = self._view(amax.clamp_min(_MIN_AMAX) / self.qmax, x)
        return scale, torch.zeros_like(scale), self.qmin * scale

    @torch.no_grad()
    def interval(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(lo, hi): the lowest and highest representable values ([] or [C], detached)."""
        scale, zero, lo = self._grid(self.amax, self.amax.detach())
        return lo.detach(), ((self.qmax - zero) * scale).detach()

    def _pams(self, x: torch.Tensor) -> torch.Tensor:
        scale, zero, lo = self._grid(x, self.amax)
        hi = (self.qmax - zero) * scale
        return pams_quantize(x, lo, hi, scale, zero, self.qmin, self.qmax)

    def _fake_quant(self, x: torch.Tensor, exporting: bool = False) -> torch.Tensor:
        amax = self.amax.detach()  # floored at _MIN_AMAX by set_amax; no clamp node in exported graphs
        scale = amax / self.qmax
        qmin, qmax = self.qmin, self.qmax
        if self.asymmetric:
            scale, zero, lo = (t.detach() for t in self._grid(x, amax))
            x = torch.clamp(
                x, lo, (qmax - zero) * scale
            )  # exporters take (0, 255): clamp to the low-bit grid
            return torch.fake_quantize_per_tensor_affine(x, scale, zero.to(torch.int32), 0, 255)
        if self.bits < 8:
            # Exporters accept the int8/uint8 ranges only: clamp to the low-bit grid, then use the full one.
            if not (self.is_weight and exporting):
                a = self._view(scale, x)
                x = torch.clamp(x, qmin * a, qmax * a)
            qmin, qmax = (0, 255) if self.unsigned else (-128, 127)
        elif self.bits == 8 and not self.unsigned and self.narrow_range:
            # Exporters accept (-128, 127) only; clamping first makes it the [-127, 127] grid.
            if not (self.is_weight and exporting):
                a = self._view(amax, x)
                x = torch.clamp(x, -a, a)
            qmin = -128
        if self.axis is None:
            zero = torch.zeros((), dtype=torch.int32, device=x.device)
            return torch.fake_quantize_per_tensor_affine(x, scale, zero, qmin, qmax)
        zero = torch.zeros(scale.shape, dtype=torch.int32, device=x.device)
        return torch.fake_quantize_per_channel_affine(x, scale, zero, self.axis % x.dim(), qmin, qmax)

    def _lsq(self, x: torch.Tensor) -> torch.Tensor:
        per_step = x.numel() // max(1, x.shape[0]) if x.dim() else 1
        g = 1.0 / math.sqrt(max(1, per_step) * self.qmax)
        scale = self.amax.clamp_min(_MIN_AMAX) / self.qmax
        # value = scale, gradient = g * d/dscale (LSQ's gradient scaling).
        scale = (scale - scale * g).detach() + scale * g
        s = self._view(scale, x)
        v = torch.clamp(x / s, self.qmin, self.qmax)
        v = (torch.round(v) - v).detach() + v
        return v * s
