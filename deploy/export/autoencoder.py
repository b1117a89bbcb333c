"""ONNX export of an autoencoder (models.dq) as two graphs, encoder and decoder, each with its sidecar.

- `<stem>.encoder.onnx`: x [batch, 3, S, S] (normalised like every RGB model) -> codes0 ... codes{L-1}
  [batch, G, S_l, S_l] int64, bottom level first. The nearest-code search is Conv (the projection),
  MatMul / ReduceSum for the distances, ArgMin, and Gather for the chosen codes' vectors that condition
  the level below.
- `<stem>.decoder.onnx`: codes0 ... codes{L-1} -> pixels [batch, 3, S, S] float32 (the mean reconstruction,
  0..255, not rounded) and head [batch, C, S, S] (the output head's parameters, for the likelihood).

Sidecars record task "autoencode" and `extra.part` ("encoder" / "decoder"), the sibling's file name, and
in the decoder's the CodeSpec (codebook sizes, head, prior) that scores the codes (models.dq.rate).
Fixed spatial size (the checkpoint's input size), dynamic batch. Fake-quant (PTQ) models export with Q/DQ
on their convolutions like the classifiers.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch
from torch import Tensor, nn

from ...calibration.quant.export import prepare_for_export
from ...common.errors import ExportError, ModelError
from ...common.files import atomic_path
from ...models.checkpoint import LoadedCheckpoint
from ...models.dq.autoencoder import HierarchicalAE
from ...models.dq.rate import CodeSpec
from ..artifact import ArtifactMeta, TensorSpec, describe_model, write_sidecar
from ..onnx.graph import import_onnx
from .onnx import MIN_OPSET, quiet_exporter

logger = logging.getLogger(__name__)


class AutoencoderEncoder(nn.Module):
    """x -> the codes of every level (HierarchicalAE.encode), as a tuple for the exporter."""

    def __init__(self, model: HierarchicalAE) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        return self.model.encode(x)


class AutoencoderDecoder(nn.Module):
    """The codes of every level -> (mean reconstruction in pixels, head output)."""

    def __init__(self, model: HierarchicalAE) -> None:
        super().__init__()
        self.model = model

    def forward(self, *codes: Tensor) -> tuple[Tensor, Tensor]:
        out = self.model.decode(codes)
        return self.model.mean_pixels(out), out


def autoencoder_of(model: nn.Module | LoadedCheckpoint) -> HierarchicalAE:
    """The HierarchicalAE inside `model` (a module or loaded checkpoint). Raises ModelError for any other model."""
    module = model.model if isinstance(model, LoadedCheckpoint) else model
    if not isinstance(module, HierarchicalAE):
        what = getattr(module, "task", "classify")
        name = model.arch if isinstance(model, LoadedCheckpoint) else type(module).__name__
        raise ModelError(f"{name} is a {what!r} model, not an autoencoder (dq_ae, dq_ae_cpu)")
    return module


def part_paths(path: Path | str) -> tuple[Path, Path]:
    """(encoder, decoder) file paths for `--out path`: ae.onnx -> ae.encoder.onnx, ae.decoder.onnx."""
    path = Path(path)
    stem = path.name[: -len(".onnx")] if path.name.endswith(".onnx") else path.name
    for part in (".encoder", ".decoder"):
        stem = stem[: -len(part)] if stem.endswith(part) else stem
    return path.with_name(f"{stem}.encoder.onnx"), path.with_name(f"{stem}.decoder.onnx")


def _export(
    module: nn.Module, args: tuple[Tensor, ...], names: list[str], outputs: list[str], opset: int, path: Path
) -> None:
    onnx = import_onnx("ONNX export", "onnx and onnxscript")
    batch = torch.export.Dim("batch")
    dynamic: tuple = tuple({0: batch} for _ in names)
    if isinstance(module, AutoencoderDecoder):
        dynamic = (dynamic,)  # forward(*codes): one variadic argument
    with quiet_exporter():
        try:
            program = torch.onnx.export(
                module,
                args,
                dynamo=True,
                external_data=False,
                opset_version=opset,
                input_names=names,
                output_names=outputs,
                dynamic_shapes=dynamic,
                verbose=False,
            )
        except Exception as exc:  # torch.export raises many kinds
            raise ExportError(
                f"ONNX export of {path.name} failed: {type(exc).__name__}: {str(exc)[:500]}"
            ) from exc
    proto = program.model_proto
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"the exported graph {path.name} is not valid ONNX: {str(exc)[:500]}") from None
    with atomic_path(path) as tmp:
        onnx.save_model(proto, str(tmp))


def export_autoencoder_onnx(
    model: nn.Module | LoadedCheckpoint, path: Path | str, *, opset: int = 18
) -> tuple[Path, Path]:
    """Write `<stem>.encoder.onnx` and `<stem>.decoder.onnx` (see the module docstring) with sidecars.

    Returns (encoder path, decoder path). Raises ModelError for a model that is not an autoencoder,
    ExportError for a failed export, BackendUnavailable without onnx.
    """
    ae = autoencoder_of(model)
    if opset < MIN_OPSET:
        raise ExportError(f"opset {opset} is too old; use {MIN_OPSET} or later")
    enc_path, dec_path = part_paths(path)
    meta = describe_model(model, opset=opset)
    module = prepare_for_export(ae).eval()
    size = ae.input_size
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        codes = module.encode(x)
        _, head = AutoencoderDecoder(module)(*codes)
    code_names = [f"codes{i}" for i in range(len(codes))]
    code_specs = tuple(
        TensorSpec(n, ("batch", *c.shape[1:]), "int64") for n, c in zip(code_names, codes, strict=True)
    )
    _export(AutoencoderEncoder(module).eval(), (x,), ["x"], code_names, opset, enc_path)
    _export(AutoencoderDecoder(module).eval(), tuple(codes), code_names, ["pixels", "head"], opset, dec_path)
    spec = CodeSpec.of(ae)
    base = {**meta.extra, "stride_multiple": ae.stride_multiple}
    enc_meta = dataclasses.replace(
        meta,
        outputs=code_specs,
        exporter="dynamo",
        extra={**base, "part": "encoder", "decoder": dec_path.name},
    )
    dec_meta = dataclasses.replace(
        meta,
        inputs=code_specs,
        outputs=(
            TensorSpec("pixels", ("batch", 3, size, size)),
            TensorSpec("head", ("batch", head.shape[1], size, size)),
        ),
        exporter="dynamo",
        extra={**base, "part": "decoder", "encoder": enc_path.name, "code_spec": spec.to_dict()},
    )
    write_sidecar(enc_path, enc_meta, "onnx")
    write_sidecar(dec_path, dec_meta, "onnx")
    logger.info("exported the autoencoder to %s and %s", enc_path, dec_path)
    return enc_path, dec_path


def describe_parts(meta: ArtifactMeta) -> str | None:
    """ "encoder" / "decoder" for the sidecar of an exported autoencoder part, None otherwise."""
    part = meta.extra.get("part")
    return part if meta.task == "autoencode" and part in ("encoder", "decoder") else None
