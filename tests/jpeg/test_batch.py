"""jpeg/batch.py: the one batch -> model inputs mapping (training, PTQ, evaluation, every runtime)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dctq.common.errors import DataError, QuantizationError
from dctq.jpeg.batch import DCT_INPUTS, model_arrays, model_inputs


def _dct(n: int = 2) -> dict:
    return {
        "y": torch.randint(-50, 50, (n, 64, 4, 4), dtype=torch.int16),
        "cbcr": torch.randint(-50, 50, (n, 128, 2, 2), dtype=torch.int16),
        "qt": torch.ones(n, 3, 64),
        "label": torch.zeros(n, dtype=torch.int64),
        "quality": torch.full((n,), 50),
    }


def test_dicts_by_their_keys():
    batch = _dct()
    y, cbcr, qt = model_inputs(batch)
    assert y.dtype == cbcr.dtype == torch.float32 and torch.equal(y, batch["y"].float())
    assert qt is batch["qt"]  # already float32 where it is: not copied
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    assert model_inputs({"x": x, "label": 0})[0] is x  # floats keep their dtype by default
    assert len(model_inputs({"x": x, "qt": batch["qt"]})) == 2
    assert model_inputs({"y": batch["y"], "cbcr": None, "qt": batch["qt"]})[1] is None  # grayscale-only
    with pytest.raises(DataError, match="needs 'qt'"):
        model_inputs({"y": batch["y"], "cbcr": batch["cbcr"]})
    with pytest.raises(QuantizationError, match=r"calibration batch has keys \['image'\]; expected"):
        model_inputs({"image": x}, source="calibration batch", error=QuantizationError)


def test_named_inputs_as_runtimes_take_them():
    batch = {**_dct(), "cbcr": None}
    with pytest.raises(
        DataError, match=r"model\.onnx needs input 'cbcr'; the batch has \['label', 'qt', 'quality', 'y'\]"
    ):
        model_inputs(batch, names=DCT_INPUTS, source="model.onnx")
    batch = {k: v.numpy() for k, v in _dct().items()}
    kept = model_inputs(batch, names=DCT_INPUTS, int_dtype=None)
    assert kept[0].dtype == torch.int16 and isinstance(kept[0], torch.Tensor)  # TensorRT converts on the GPU
    half = model_inputs(batch, names=DCT_INPUTS, int_dtype=torch.float16)
    assert half[0].dtype == torch.float16 and half[2].dtype == torch.float32  # tables stay exact
    arrays = model_arrays({**batch, "qt": batch["qt"].astype(np.float64)}, DCT_INPUTS, source="m.onnx")
    assert list(arrays) == list(DCT_INPUTS)
    assert all(a.dtype == np.float32 and a.flags.c_contiguous for a in arrays.values())
    np.testing.assert_array_equal(arrays["y"], batch["y"].astype(np.float32))


def test_tensors_tuples_and_bad_values():
    t = torch.arange(6, dtype=torch.int32).reshape(2, 3)
    (only,) = model_inputs(t)
    assert only.dtype == torch.float32
    a, b = model_inputs((t, np.ones(2, dtype=np.float32)), torch.device("cpu"), dtype=torch.float64)
    assert a.dtype == b.dtype == torch.float64
    with pytest.raises(DataError, match="holds a list for 'y'"):
        model_inputs({"y": [1, 2], "qt": t})
    with pytest.raises(DataError, match="cannot feed a str"):
        model_inputs("y")
