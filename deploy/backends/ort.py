"""The ONNX Runtime backend ("ort"): .onnx artifacts on the CPUExecutionProvider.

Q/DQ graphs are rewritten at load time (ort_rewrite.rewrite_for_ort): int8 activations to the
identical uint8/128 grid, weights folded to int8 initializers, the conv input of TensorRT-form
residual Adds given a Q/DQ (on the Add's output grid), Relu moved into the integer domain so ORT's
`DQ -> Conv -> Q` fusion builds QLinearConv and QLinearAdd, and the weights of layers ORT leaves in
float pre-dequantized. `rewrite=False` runs the graph exactly as exported.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...common.errors import BackendUnavailable, DctqError, ExportError
from ...jpeg.batch import model_arrays
from ..artifact import Artifact
from ..onnx.graph import load_onnx
from ..onnx.ort_rewrite import is_qdq_model, rewrite_for_ort
from .registry import register_backend

logger = logging.getLogger(__name__)


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise BackendUnavailable(
            "the 'ort' backend needs ONNX Runtime: pip install onnxruntime (or pip install 'dctq[onnx]')"
        ) from None
    return onnxruntime


class OrtRunner:
    """An onnxruntime.InferenceSession over one artifact; predict(batch) -> logits [N, classes] float32."""

    backend = "ort"
    device = "cpu"

    def __init__(
        self,
        artifact: Artifact,
        *,
        rewrite: bool = True,
        add_scale: str | None = "output",
        threads: int | None = None,
        optimized_model_path: Path | str | None = None,
    ) -> None:
        ort = _ort()
        self.artifact = artifact
        self.__name__ = f"ort:{artifact.path.name}"
        model = load_onnx(artifact.path)
        self.rewrite_stats = None
        if rewrite and is_qdq_model(model):
            model, self.rewrite_stats = rewrite_for_ort(model, add_scale=add_scale)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # ORT warns about every serialisation of NCHWc graphs
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        if optimized_model_path is not None:
            options.optimized_model_filepath = str(optimized_model_path)
        try:
            self.session = ort.InferenceSession(
                model.SerializeToString(), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime's Fail/InvalidGraph/... have no common public base
            raise ExportError(f"ONNX Runtime cannot load {artifact.path}: {str(exc)[:500]}") from None
        self.input_names = tuple(i.name for i in self.session.get_inputs())
        self.output_name = self.session.get_outputs()[0].name

    def predict(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """Logits of a batch of any size: a graph exported with a fixed batch runs it in chunks of that
        size, the last one padded by repeating its last image (the padding's logits are dropped).

        Raises DctqError when an input is missing or ORT rejects the shapes.
        """
        feeds = model_arrays(batch, self.input_names, source=str(self.artifact.path))
        fixed = self.artifact.meta.fixed_batch
        size = len(next(iter(feeds.values()))) if feeds else 0
        if fixed is None or size == fixed or size == 0:
            return self._run(feeds)
        outs = []
        for start in range(0, size, fixed):
            chunk = {k: v[start : start + fixed] for k, v in feeds.items()}
            real = len(next(iter(chunk.values())))
            if real < fixed:
                chunk = {
                    k: np.concatenate([v, np.repeat(v[-1:], fixed - real, axis=0)]) for k, v in chunk.items()
                }
            outs.append(self._run(chunk)[:real])
        return torch.cat(outs)

    def _run(self, feeds: dict[str, Any]) -> torch.Tensor:
        try:
            out = self.session.run([self.output_name], feeds)[0]
        except Exception as exc:  # onnxruntime raises its own exception types
            shapes = {k: list(v.shape) for k, v in feeds.items()}
            raise DctqError(
                f"ONNX Runtime failed on {self.artifact.path.name} with inputs {shapes}: {str(exc)[:300]}"
            ) from None
        return torch.from_numpy(out)

    __call__ = predict

    def synchronize(self) -> None:
        return None


class OrtBackend:
    """ONNX Runtime on the CPU. Options: rewrite (bool), add_scale (rewrite_for_ort's; None keeps a
    TensorRT-form graph's float residual Adds), threads (int), optimized_model_path."""

    name = "ort"
    accepts = ("onnx",)

    def load(self, artifact: Artifact, *, device: str = "auto", **options: Any) -> OrtRunner:
        if device not in ("auto", "cpu"):
            raise BackendUnavailable(
                f"the 'ort' backend runs on the CPU only (asked for {device!r}); use --backend tensorrt for the GPU"
            )
        return OrtRunner(artifact, **options)


register_backend(OrtBackend())
