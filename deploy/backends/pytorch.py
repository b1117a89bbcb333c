"""The PyTorch backend ("torch"): checkpoints (.pt, float or quantized), TorchScript (.ts) and
torch.export programs (.pt2), on the CPU or a CUDA device; and the Runner for models in memory.

    runner = TorchRunner(model)                       # an nn.Module, a LoadedCheckpoint or an Artifact
    logits = runner.predict({"y": y, "cbcr": cbcr, "qt": qt})

QSAM's QABN models run either by oracle routing (each image to the BatchNorm branch of the nearest
base quality) or with their quant-table mixer; the runner decides which once, when it is made
(`models.qabn.choose_routing`): "auto" follows the checkpoint's extra["qsam"]["stage"] or, for a
model in memory, the stage recorded on its mixer.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ...common.devices import resolve_device
from ...common.errors import DctqError, ExportError
from ...jpeg.batch import input_names, model_inputs
from ...models.checkpoint import LoadedCheckpoint
from ...models.qabn import choose_routing, is_qabn, qabn_routing
from ...models.qabn_routing import oracle_branch_index
from ..artifact import Artifact, input_specs, needs_qt, require_trusted
from .registry import register_backend

logger = logging.getLogger(__name__)


def _checkpoint_stage(loaded: LoadedCheckpoint) -> str | None:
    return (loaded.extra.get("qsam") or {}).get("stage")


def _module_names(module: nn.Module) -> tuple[str, ...] | None:
    """The inputs a dctq model reads (None for other modules: taken from each batch's keys)."""
    kind, size = getattr(module, "input_kind", None), getattr(module, "input_size", None)
    if kind not in ("dct", "rgb") or not isinstance(size, int):
        return None
    return tuple(t.name for t in input_specs(kind, size, with_qt=needs_qt(module)))


def _load_scripted(artifact: Artifact, device: torch.device) -> nn.Module:
    """The TorchScript module or torch.export program of `artifact`, a trusted one only (both kinds hold
    code: artifact.CODE_KINDS). Raises UntrustedArtifactError without trust, ExportError if unloadable."""
    require_trusted(artifact)
    if artifact.kind == "torchscript":
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                module = torch.jit.load(str(artifact.path), map_location=device)
        except (RuntimeError, ValueError) as exc:
            raise ExportError(
                f"{artifact.path} is not a loadable TorchScript file: {str(exc)[:300]}"
            ) from None
        return module.eval()
    try:
        return torch.export.load(str(artifact.path)).module().to(device)
    except Exception as exc:  # torch.export.load raises several kinds
        raise ExportError(
            f"{artifact.path} is not a loadable torch.export program: {str(exc)[:300]}"
        ) from None


class TorchRunner:
    """A PyTorch model behind the Runner interface; predict(batch) -> logits [N, classes] float32 on `device`.

    Args:
        model: an Artifact (checkpoint, TorchScript, torch.export program), a LoadedCheckpoint, or an
            nn.Module (a dctq model reads the inputs of its input kind; any other module takes them from
            each batch's keys, jpeg.batch.input_names). Modules are moved to `device` and set to eval mode.
        device: "auto", "cpu", "cuda", "cuda:N" (common.devices.resolve_device).
        qabn_routing: "auto", "oracle" or "mixer" for QSAM's QABN models (ignored by other models);
            the routing used is `self.qabn_routing` ("oracle", "mixer", or None without QABN).

    Raises:
        DctqError: an artifact kind this backend does not run. ModelError: a bad routing name.
        ExportError: an unloadable TorchScript/program file. BackendUnavailable: CUDA asked, none here.
    """

    backend = "torch"

    def __init__(
        self,
        model: Artifact | LoadedCheckpoint | nn.Module,
        *,
        device: str | torch.device = "auto",
        qabn_routing: str = "auto",
    ) -> None:
        self.torch_device = resolve_device(device)
        self.device = str(self.torch_device)
        self.artifact = model if isinstance(model, Artifact) else None
        stage: str | None = None
        if isinstance(model, Artifact):
            self.source = model.path.name
            names: tuple[str, ...] | None = model.meta.input_names
            if model.kind == "checkpoint":
                if model.checkpoint is None:
                    raise DctqError(f"{model.path}: the checkpoint artifact holds no model")
                module, stage = model.checkpoint.model, _checkpoint_stage(model.checkpoint)
            elif model.kind in ("torchscript", "program"):
                module = _load_scripted(model, self.torch_device)  # on the device, ready (eval) as loaded
            else:
                raise DctqError(f"the 'torch' backend cannot run a {model.kind} artifact ({model.path.name})")
        elif isinstance(model, LoadedCheckpoint):
            module, stage = model.model, _checkpoint_stage(model)
            self.source, names = model.arch, _module_names(model.model)
        else:
            module = model
            self.source, names = type(model).__name__, _module_names(model)
            if is_qabn(module):
                stage = module.qabn_mixer.stage
        self.__name__ = f"torch:{self.source}"
        self.input_names = names
        if self.artifact is None or self.artifact.kind == "checkpoint":
            module = module.to(self.torch_device).eval()
        self.module = module
        self.qabn_routing = choose_routing(self.module, qabn_routing, stage=stage)

    def predict(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """Raises DataError (a DctqError) naming an input the batch lacks."""
        names = self.input_names or input_names(batch, source=self.source)
        with torch.inference_mode():
            inputs = model_inputs(
                batch, self.torch_device, names=names, dtype=torch.float32, source=self.source
            )
            if self.qabn_routing == "oracle":
                with qabn_routing(self.module, oracle_branch_index(inputs[names.index("qt")])):  # type: ignore[arg-type]
                    return self.module(*inputs).float()
            return self.module(*inputs).float()

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
