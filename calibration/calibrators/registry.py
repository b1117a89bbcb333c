"""Calibrators by name: the recipe names one, `create_calibrator` builds it."""

from __future__ import annotations

import difflib
import inspect
from typing import Any

from ...common.config import unknown_names
from ...common.errors import QuantizationError
from .base import Calibrator
from .entropy import EntropyCalibrator
from .max import MaxCalibrator
from .mse import MseCalibrator
from .percentile import PercentileCalibrator

CALIBRATORS: dict[str, type[Calibrator]] = {
    "max": MaxCalibrator,
    "percentile": PercentileCalibrator,
    "entropy": EntropyCalibrator,
    "mse": MseCalibrator,
}
"""name -> class; every class takes (bits, axis, unsigned, **its keyword options)."""


def calibrator_class(name: str) -> type[Calibrator]:
    """The class registered as `name`. Raises QuantizationError listing the known names."""
    try:
        return CALIBRATORS[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), list(CALIBRATORS), n=2, cutoff=0.5)
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
        raise QuantizationError(
            f"unknown calibrator {name!r}; choose one of {', '.join(CALIBRATORS)}.{hint}"
        ) from None


def calibrator_options(name: str) -> dict[str, Any]:
    """The keyword options of calibrator `name` with their defaults (beyond bits/axis/unsigned)."""
    params = inspect.signature(calibrator_class(name).__init__).parameters
    return {p.name: p.default for p in params.values() if p.kind is inspect.Parameter.KEYWORD_ONLY}


def check_calibrator_args(name: str, args: dict[str, Any]) -> None:
    """Raise QuantizationError if `args` holds an option calibrator `name` does not take."""
    known = calibrator_options(name)
    if unknown := unknown_names(args, known):
        raise QuantizationError(
            f"calibrator {name!r} takes no option {unknown}; its options are {', '.join(known) or 'none'}"
        )


def create_calibrator(
    name: str, *, bits: int = 8, axis: int | None = None, unsigned: bool = False, **args: Any
) -> Calibrator:
    """A new calibrator `name` for the given grid, with options `args` (checked against its signature)."""
    check_calibrator_args(name, args)
    return calibrator_class(name)(bits, axis, unsigned, **args)
