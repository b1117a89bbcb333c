"""export: PyTorch models (FP32 or fake-quant) to files, each with a JSON sidecar (deploy/artifact.py).

- onnx: export_onnx, opset >= 17, dynamic batch, Q/DQ nodes for TensorRT's explicit quantization (the
  torch.export-based exporter, the TorchScript one as fallback);
- torchscript: export_torchscript (.ts) and export_program (torch.export, .pt2);
- formats: export_artifact, `dctq export` as one call (a checkpoint to any FORMATS entry, the TensorRT engine
  built from the ONNX file by deploy/backends/tensorrt/build.py).
"""

from .formats import FORMATS, ExportResult, export_artifact
from .onnx import MIN_OPSET, export_onnx
from .torchscript import export_program, export_torchscript

__all__ = [
    "FORMATS",
    "MIN_OPSET",
    "ExportResult",
    "export_artifact",
    "export_onnx",
    "export_program",
    "export_torchscript",
]
