"""triton: a Triton Inference Server model repository of a dctq model, which takes JPEG bytes.

- repository: export_triton (the ONNX Runtime model, a TensorRT plan where given, the JPEG and label
  Python-backend models and the ensembles joining them, each with its config.pbtxt);
- check: check_repository (every config read back through Triton's schema, the ensembles' wiring checked);
- model_config: config.pbtxt written as protobuf text and parsed strictly through message classes built
  from Triton's model_config.proto (the fields dctq writes);
- python_models: JpegDecoder and LabelDecoder, the Python-backend models (TritonPythonModel).
"""

from ...common.lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(
        ("TritonRepository", "export_triton", "model_name"),
        "dctq.deploy.triton.repository",
    ),
    **dict.fromkeys(("check_repository", "read_configs"), "dctq.deploy.triton.check"),
    **dict.fromkeys(("config_json", "parse_config", "render_pbtxt"), "dctq.deploy.triton.model_config"),
    **dict.fromkeys(("JpegDecoder", "LabelDecoder", "decode_jpeg_input"), "dctq.deploy.triton.python_models"),
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
