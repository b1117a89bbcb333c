"""The two Triton Python-backend models of a dctq model repository: JPEG bytes in, labels out.

`JpegDecoder` turns each request's JPEG files (a TYPE_STRING tensor [n, 1]) into the model's inputs
with dctq's own reader and preprocessing (y, cbcr, qt for DCT models: the file's quantized
coefficients, centre-cropped/padded to the model's block grid; x, qt for RGB models), typed as the
model's config asks (FP32 for ONNX Runtime, FP16 coefficients for a TensorRT plan). `LabelDecoder`
turns logits [n, classes] into the top class name, its softmax probability and its index.

Triton imports the `model.py` of each model folder and looks for `TritonPythonModel`; dctq's files are
one line, `from dctq.deploy.triton.python_models import JpegDecoder as TritonPythonModel`, so the
Python backend's environment needs dctq installed. Both classes follow the Python backend's documented
interface (triton-inference-server/python_backend README): `initialize(args)` with
`args["model_config"]` (the config as JSON) and `args["model_repository"]` (the model's folder),
`execute(requests) -> one InferenceResponse per request`, an error on one request answered on that
request only. `triton_python_backend_utils` exists only inside Triton, so it is imported when a method
runs, never when this module is imported.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ...common.errors import DctqError, JpegError
from ...jpeg.dataset import preprocess_dct
from ...jpeg.reader import read_jpeg
from ...jpeg.rgb import decode_rgb, preprocess_rgb

LABELS_FILE = "labels.txt"
"""One class name a line, in class-index order: in the label model's folder (and beside the model,
where Triton's classification extension reads it through `label_filename`)."""


def _pb_utils() -> Any:
    import triton_python_backend_utils  # provided by Triton's Python backend

    return triton_python_backend_utils


def _parameters(config: dict[str, Any]) -> dict[str, str]:
    return {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}


def decode_jpeg_input(data: bytes, input_kind: str, input_size: int) -> dict[str, np.ndarray]:
    """One JPEG file's bytes as a model's inputs, exactly as `dctq predict` reads a file.

    DCT: {"y": [64, S/8, S/8] int16, "cbcr": [128, S/16, S/16] int16, "qt": [3, 64] float32};
    RGB: {"x": [3, S, S] float32, "qt": [3, 64] float32}. Raises JpegError (and its subclasses).
    """
    if not isinstance(data, bytes | bytearray | np.bytes_):
        raise JpegError(f"expected the JPEG file's bytes, got {type(data).__name__}")
    if input_kind == "dct":
        return preprocess_dct(read_jpeg(bytes(data)), input_size)
    rgb, qt = decode_rgb(bytes(data), "request")
    return {"x": preprocess_rgb(rgb, input_size), "qt": qt}


class JpegDecoder:
    """Triton Python model: input `jpeg` (TYPE_STRING [n, 1]) -> the model's inputs (one output each).

    Config parameters: input_kind ("dct" or "rgb"), input_size (pixels). Output names and data types
    come from the config's outputs, so one class serves ONNX Runtime (FP32) and TensorRT (FP16) models.
    """

    def initialize(self, args: dict[str, str]) -> None:
        pb = _pb_utils()
        config = json.loads(args["model_config"])
        params = _parameters(config)
        self.input_kind = params.get("input_kind", "dct")
        self.input_size = int(params.get("input_size", "0"))
        self.input_name = config["input"][0]["name"]
        self.outputs = [(o["name"], pb.triton_string_to_numpy(o["data_type"])) for o in config["output"]]

    def _tensors(self, pb: Any, request: Any) -> list[Any]:
        tensor = pb.get_input_tensor_by_name(request, self.input_name)
        if tensor is None:
            raise DctqError(f"the request has no input {self.input_name!r}")
        files = tensor.as_numpy().reshape(-1)
        if not len(files):
            raise DctqError("the request holds no JPEG file")
        samples = []
        for i, data in enumerate(files):
            try:
                samples.append(decode_jpeg_input(data, self.input_kind, self.input_size))
            except JpegError as exc:
                raise JpegError(f"image {i} of the request: {exc}") from None
        return [
            pb.Tensor(name, np.stack([s[name] for s in samples]).astype(dtype))
            for name, dtype in self.outputs
        ]

    def execute(self, requests: list[Any]) -> list[Any]:
        pb = _pb_utils()
        responses = []
        for request in requests:
            try:
                responses.append(pb.InferenceResponse(output_tensors=self._tensors(pb, request)))
            except DctqError as exc:  # a bad file fails its own request, not the others of the batch
                responses.append(pb.InferenceResponse(output_tensors=[], error=pb.TritonError(str(exc))))
        return responses

    def finalize(self) -> None:
        return None


class LabelDecoder:
    """Triton Python model: input `logits` [n, classes] -> `label` (TYPE_STRING [n, 1]), `probability`
    (TYPE_FP32 [n, 1], softmax) and `index` (TYPE_INT64 [n, 1]) of the top class. The class names are
    read from labels.txt in the model's folder."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        self.input_name = config["input"][0]["name"]
        path = Path(args["model_repository"]) / LABELS_FILE
        self.class_names = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []

    def execute(self, requests: list[Any]) -> list[Any]:
        pb = _pb_utils()
        responses = []
        for request in requests:
            tensor = pb.get_input_tensor_by_name(request, self.input_name)
            if tensor is None:
                error = pb.TritonError(f"the request has no input {self.input_name!r}")
                responses.append(pb.InferenceResponse(output_tensors=[], error=error))
                continue
            logits = tensor.as_numpy().astype(np.float64).reshape(len(tensor.as_numpy()), -1)
            shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
            probs = shifted / shifted.sum(axis=1, keepdims=True)
            index = probs.argmax(axis=1)
            names = self.class_names
            labels = [(names[i] if i < len(names) else str(i)).encode("utf-8") for i in index]
            responses.append(
                pb.InferenceResponse(
                    output_tensors=[
                        pb.Tensor("label", np.array(labels, dtype=np.object_).reshape(-1, 1)),
                        pb.Tensor("probability", probs.max(axis=1).astype(np.float32).reshape(-1, 1)),
                        pb.Tensor("index", index.astype(np.int64).reshape(-1, 1)),
                    ]
                )
            )
        return responses

    def finalize(self) -> None:
        return None
