"""A batch -> a model's positional inputs: the one mapping from what dctq's loaders yield to `model(*inputs)`.

The loaders' batches are dicts (jpeg/dataset.py `collate_samples` of DctSamples or RgbSamples):

- DCT: {"y": [N, 64, Hb, Wb] int16, "cbcr": [N, 128, Hb/2, Wb/2] int16, "qt": [N, 3, 64] float32, ...}
  -> (y, cbcr, qt), the order of `forward(y, cbcr, qt)`;
- RGB: {"x": [N, 3, H, W] float32, "qt": [N, 3, 64] float32 (optional), ...} -> (x, qt) or (x,);

other keys ("label", "quality", "branch") are ignored. Runtimes that know their graph's input names
pass them and get exactly those inputs, in that order. A bare tensor or array is the one input; a
tuple or list holds the inputs already in order. Values may be torch tensors or numpy arrays.

Coefficients are integers but models compute in floating point: by default integer inputs become
float32 and floating inputs keep their dtype (a float64 or float16 batch stays as given);
`dtype` casts every input instead (runtimes with a float32 graph), `int_dtype` picks the type of the
integers (FP16 on the GPU input path, exact for every baseline coefficient) or None to leave them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..common.errors import DataError, DctqError

DCT_INPUTS = ("y", "cbcr", "qt")
"""Input names of DCT models, in the order of forward(y, cbcr, qt)."""
RGB_INPUTS = ("x", "qt")
"""Input names of RGB models, forward(x, qt=None); qt only for QSAM's QABN models."""


def _present(batch: Mapping[str, Any]) -> list[str]:
    return sorted(str(k) for k, v in batch.items() if v is not None)


def input_names(
    batch: Mapping[str, Any], *, source: str = "the batch", error: type[DctqError] = DataError
) -> tuple[str, ...]:
    """The model inputs a batch dict holds, by its keys: DCT_INPUTS when it has "y", ("x", "qt") or
    ("x",) when it has "x" (qt only when present).

    Raises `error` for a DCT batch without "qt", or a batch with neither "y" nor "x".
    """
    if "y" in batch:
        if batch.get("qt") is None:
            raise error(f"{source}: a DCT batch needs 'qt' [N, 3, 64] next to 'y'")
        return DCT_INPUTS
    if "x" in batch:
        return RGB_INPUTS if batch.get("qt") is not None else ("x",)
    raise error(f"{source} has keys {_present(batch)}; expected 'y'/'cbcr'/'qt' (DCT) or 'x' (RGB)")


def _tensor(
    value: Any,
    what: str,
    device: torch.device | str | None,
    dtype: torch.dtype | None,
    int_dtype: torch.dtype | None,
    source: str,
    error: type[DctqError],
) -> Tensor | None:
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.ascontiguousarray(value))
    elif not isinstance(value, Tensor):
        raise error(
            f"{source} holds a {type(value).__name__} for {what} where a tensor or array was expected"
        )
    target = dtype
    if target is None and int_dtype is not None and not value.is_floating_point():
        target = int_dtype
    # .to() returns the tensor itself when nothing changes: no copy for inputs already in place.
    return value.to(device=device, dtype=target, non_blocking=True)


def model_inputs(
    batch: Mapping[str, Any] | Tensor | np.ndarray | Sequence[Any],
    device: torch.device | str | None = None,
    *,
    names: Sequence[str] | None = None,
    dtype: torch.dtype | None = None,
    int_dtype: torch.dtype | None = torch.float32,
    source: str = "the batch",
    error: type[DctqError] = DataError,
) -> tuple[Tensor | None, ...]:
    """The positional inputs of a model for one batch (see the module docstring).

    Args:
        batch: a dict of tensors/arrays, a tensor/array (one input), or a tuple/list of inputs.
        device: move every input there (None: leave them where they are).
        names: the inputs to take from a dict, in order (a runtime's graph inputs); None: by the keys
            (`input_names`), where a DCT batch's "cbcr" may be None (grayscale-only models).
        dtype: cast every input to it; else integer inputs become `int_dtype` (None: left as they are).
        source: names the batch in messages ("calibration batch", "model.onnx").
        error: the DctqError subclass raised, so each caller reports in its own domain.

    Returns:
        a tuple of tensors (a None entry only where the batch itself holds None).

    Raises:
        `error`: a missing input (naming it and the keys the batch has), a value that is not a tensor
        or array, or a batch of another type.
    """
    convert = {"device": device, "dtype": dtype, "int_dtype": int_dtype, "source": source, "error": error}
    if isinstance(batch, Tensor | np.ndarray):
        return (_tensor(batch, "its input", **convert),)
    if isinstance(batch, Mapping):
        if names is None:
            names = input_names(batch, source=source, error=error)
        else:
            missing = [n for n in names if batch.get(n) is None]
            if missing:
                raise error(f"{source} needs input {missing[0]!r}; the batch has {_present(batch)}")
        return tuple(_tensor(batch.get(n), repr(n), **convert) for n in names)
    if isinstance(batch, tuple | list):
        return tuple(_tensor(v, f"input {i}", **convert) for i, v in enumerate(batch))
    raise error(f"cannot feed a {type(batch).__name__} to a model; give dicts, tensors or tuples")


def model_arrays(batch: Mapping[str, Any], names: Sequence[str], *, source: str) -> dict[str, np.ndarray]:
    """{name: contiguous float32 numpy array (on the CPU)} for runtimes fed numpy (ONNX Runtime).

    Raises DataError as `model_inputs` (naming the missing input).
    """
    tensors = model_inputs(batch, "cpu", names=names, dtype=torch.float32, source=source)
    return {n: np.ascontiguousarray(t.detach().numpy()) for n, t in zip(names, tensors, strict=True)}  # type: ignore[union-attr]
