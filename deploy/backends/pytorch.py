"""The PyTorch backend ("torch"): checkpoints (.pt, float or quantized), TorchScript (.ts) and
torch.export programs (.pt2), on the CPU or a CUDA device."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ...common.devices import resolve_device
from ...common.errors import DctqError, ExportError
from ...jpeg.batch import model_inputs
from ..artifact import Artifact
from .registry import register_backend

logger = logging.getLogger(__name__)


class TorchRunner:
    """A PyTorch module or program over one artifact; predict(batch) -> logits [N, classes] on `device`."""

    backend = "torch"

    def __init__(self, artifact: Artifact, *, device: str = "auto", qabn_routing: str = "auto") -> None:
        self.artifact = artifact
        self.torch_device = resolve_device(device)
        self.device = str(self.torch_device)
        self.__name__ = f"torch:{artifact.path.name}"
        self.input_names = artifact.meta.input_names
        self._predictor = None
        if artifact.kind == "checkpoint":
            from ..evaluate import as_predictor

            if artifact.checkpoint is None:
                raise DctqError(f"{artifact.path}: the checkpoint artifact holds no model")
            self._predictor, _, _ = as_predictor(
                artifact.checkpoint, self.torch_device, qabn_routing=qabn_routing
            )
            self.module = artifact.checkpoint.model
        elif artifact.kind == "torchscript":
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    self.module = torch.jit.load(str(artifact.path), map_location=self.torch_device)
            except (RuntimeError, ValueError) as exc:
                raise ExportError(
                    f"{artifact.path} is not a loadable TorchScript file: {str(exc)[:300]}"
                ) from None
            self.module.eval()
        elif artifact.kind == "program":
            try:
                self.module = torch.export.load(str(artifact.path)).module().to(self.torch_device)
            except Exception as exc:  # torch.export.load raises several kinds
                raise ExportError(
                    f"{artifact.path} is not a loadable torch.export program: {str(exc)[:300]}"
                ) from None
        else:
            raise DctqError(
                f"the 'torch' backend cannot run a {artifact.kind} artifact ({artifact.path.name})"
            )

    def _args(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, ...]:
        return model_inputs(  # type: ignore[return-value]
            batch,
            self.torch_device,
            names=self.input_names,
            dtype=torch.float32,
            source=self.artifact.path.name,
        )

    def predict(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """Raises DctqError when an input is missing."""
        with torch.inference_mode():
            if self._predictor is not None:
                tensors = {
                    k: torch.from_numpy(np.asarray(v)) if not isinstance(v, torch.Tensor) else v
                    for k, v in batch.items()
                    if v is not None
                }
                return self._predictor(tensors).float()
            return self.module(*self._args(batch)).float()

    __call__ = predict

    def synchronize(self) -> None:
        if self.torch_device.type == "cuda":
            torch.cuda.synchronize(self.torch_device)


class TorchBackend:
    """PyTorch eager / TorchScript / torch.export. Options: qabn_routing ("auto", "oracle", "mixer")."""

    name = "torch"
    accepts = ("checkpoint", "torchscript", "program")

    def load(self, artifact: Artifact, *, device: str = "auto", **options: Any) -> TorchRunner:
        return TorchRunner(artifact, device=device, **options)


register_backend(TorchBackend())
