"""A tiny calibrated DCT net exported as Q/DQ ONNX, shared by the TensorRT tests (one export per session)."""

from __future__ import annotations

import pytest
import torch

from dctq.calibration.ptq import ptq
from dctq.calibration.quant.recipe import QuantRecipe
from dctq.deploy.export.onnx import export_onnx
from dctq.models import create_model, example_inputs


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory):
    """(path of a Q/DQ ONNX of a tiny calibrated DCT net with its sidecar, the quantized model)."""
    torch.manual_seed(0)
    model = create_model("dct_cifar_upsampling", widths=(8, 8), depths=(1, 1)).eval()
    qmodel = ptq(model, QuantRecipe(calibrator="max"), [example_inputs(model, 8, seed=s) for s in range(2)])
    path = export_onnx(qmodel, tmp_path_factory.mktemp("trt") / "tiny.onnx", dynamo=False)
    return path, qmodel
