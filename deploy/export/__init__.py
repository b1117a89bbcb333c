"""export: PyTorch models (FP32 or fake-quant) to files, each with a JSON sidecar (deploy/artifact.py).

- onnx: export_onnx, opset >= 17, dynamic batch, Q/DQ nodes for TensorRT's explicit quantization (the
  torch.export-based exporter, the TorchScript one as fallback);
- torchscript: export_torchscript (.ts) and export_program (torch.export, .pt2);
- formats: export_artifact, `dctq export` as one call (a checkpoint to any FORMATS entry, the TensorRT engine
  built from the ONNX file by deploy/backends/tensorrt/build.py).
"""

from ...common.lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("ExportResult", "FORMATS", "export_artifact"), "dctq.deploy.export.formats"),
    **dict.fromkeys(("MIN_OPSET", "export_onnx"), "dctq.deploy.export.onnx"),
    **dict.fromkeys(("export_program", "export_torchscript"), "dctq.deploy.export.torchscript"),
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
