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
channel); in eval and export it runs the same ops as above.
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

logger = logging.getLogger(__name__)

_MIN_AMAX = 1e-8  # an all-zero input calibrates to amax 0; keep the scale positive


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
    [bits, unsigned, narrow_range]) saves the grid with it in state dicts.
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
    ) -> None:
        super().__init__()
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
        if learnable:
            self.amax = nn.Parameter(torch.empty(0))
        else:
            self.register_buffer("amax", torch.empty(0))
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
        return qmax_for(self.bits, self.unsigned)

    @property
    def qmin(self) -> int:
        if self.unsigned:
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

    def set_learnable(self, learnable: bool) -> None:
        """Turn amax into a trainable Parameter (QAT after PTQ) or back into a buffer."""
        if learnable == self.learnable:
            return
        value = self.amax.detach().clone()
        del self.amax
        if learnable:
            self.amax = nn.Parameter(value)
        else:
            self.register_buffer("amax", value)
        self.learnable = learnable

    def start_calibration(self) -> None:
        """Reset the calibrator and pass tensors through while observing them."""
        if self.calibrator is None:
            raise QuantizationError(f"quantizer {self.label} has no calibrator to calibrate with")
        self.calibrator.reset()
        self._saw_negative = False
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
        incoming = state_dict.get(prefix + "amax")
        if isinstance(incoming, torch.Tensor) and incoming.shape != self.amax.shape:
            # amax is sized by calibration; a fresh model holds an empty one.
            self.amax.data = torch.empty(incoming.shape, dtype=self.amax.dtype, device=self.amax.device)
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
            if not self._saw_negative and x.numel() and bool((x.detach() < 0).any()):
                self._saw_negative = True
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
            out = self._lsq(xf)
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

    def _fake_quant(self, x: torch.Tensor, exporting: bool = False) -> torch.Tensor:
        amax = self.amax.detach()  # floored at _MIN_AMAX by set_amax; no clamp node in exported graphs
        scale = amax / self.qmax
        qmin, qmax = self.qmin, self.qmax
        if self.bits == 8 and not self.unsigned and self.narrow_range:
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
