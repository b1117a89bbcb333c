"""Artifacts: checkpoints (.pt, float or quantized), ONNX (.onnx), TorchScript (.ts), torch.export
programs (.pt2) and TensorRT plans (.engine), each described by one `ArtifactMeta`.

Exported files carry a JSON sidecar `<file>.json` (model.onnx -> model.onnx.json):

    {"format": "dctq.artifact", "version": 1, "kind": "onnx", "arch": ..., "arch_kwargs": {...},
     "class_names": [...], "input_kind": "dct", "input_size": 32,
     "inputs": [{"name": "y", "shape": ["batch", 64, 4, 4], "dtype": "float32"}, ...],
     "outputs": [{"name": "logits", "shape": ["batch", 10], "dtype": "float32"}],
     "recipe": QuantRecipe.to_dict() | null, "exporter": "dynamo", "opset": 18,
     "versions": {"dctq": ..., "torch": ..., "onnx": ...}, "extra": {...}}

Checkpoints, float or quantized, are read by `dctq.models.checkpoint.load_checkpoint` (a quantized
one, written by `dctq.calibration.quant.checkpoint.save_quantized`, holds `"quant_recipe"` in its
`extra` and comes back as the calibrated fake-quant model).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import __version__
from ..calibration.quant.checkpoint import QUANT_RECIPE_KEY
from ..calibration.quant.model import recipe_of
from ..common.errors import DctqError, ExportError, ModelError
from ..common.files import write_text_atomic
from ..models.checkpoint import LoadedCheckpoint, load_checkpoint
from ..models.qabn import is_qabn
from .onnx.graph import load_onnx, opset_of

logger = logging.getLogger(__name__)

SIDECAR_FORMAT = "dctq.artifact"
SIDECAR_VERSION = 1
KINDS = {
    ".pt": "checkpoint",
    ".pth": "checkpoint",
    ".onnx": "onnx",
    ".ts": "torchscript",
    ".pt2": "program",
    ".engine": "engine",
}
DCT_INPUTS = ("y", "cbcr", "qt")


ONNX_DTYPES = {1: "float32", 10: "float16"}
"""ONNX TensorProto element types of dctq's inputs and outputs, by name."""


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: name, shape (a name such as "batch" for a dynamic axis), dtype.

    The one input-spec type of dctq: sidecars list them, and the TensorRT build reads an ONNX
    graph's inputs into them (`from_onnx`) to shape its optimization profile by `role`.
    """

    name: str
    shape: tuple[int | str, ...]
    dtype: str = "float32"

    @property
    def dims(self) -> tuple[int | None, ...]:
        """The shape with every dynamic (named) axis as None."""
        return tuple(d if isinstance(d, int) else None for d in self.shape)

    @property
    def role(self) -> str | None:
        """What the tensor holds, told by rank and channels: "luma" [N, 64, Hb, Wb], "chroma"
        [N, 128, Hb/2, Wb/2], "rgb" [N, 3, H, W], "qt" [N, 3, 64]; None for anything else."""
        dims = self.dims
        if len(dims) == 4 and dims[1] in (64, 128, 3):
            return {64: "luma", 128: "chroma", 3: "rgb"}[dims[1]]
        if len(dims) == 3 and dims[1:] == (3, 64):
            return "qt"
        return None

    @classmethod
    def from_onnx(cls, value: Any) -> TensorSpec:
        """The spec of an ONNX ValueInfoProto (a graph input or output); unnamed dynamic axes are "?"."""
        tensor = value.type.tensor_type
        shape = tuple(
            d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor.shape.dim
        )
        return cls(value.name, shape, ONNX_DTYPES.get(tensor.elem_type, str(tensor.elem_type)))


@dataclasses.dataclass(frozen=True)
class ArtifactMeta:
    """What an artifact is: the model it came from, its inputs/outputs, its quantization recipe."""

    arch: str | None
    arch_kwargs: dict[str, Any]
    class_names: tuple[str, ...]
    input_kind: str
    input_size: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    recipe: dict[str, Any] | None = None
    exporter: str | None = None
    opset: int | None = None
    versions: dict[str, str] = dataclasses.field(default_factory=dict)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    task: str = "classify"
    """What the model computes (models.registry.TASKS); sidecars written before tasks existed are "classify"."""

    @property
    def quantized(self) -> bool:
        return self.recipe is not None

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.inputs)

    @property
    def fixed_batch(self) -> int | None:
        """The batch size baked into the inputs, or None when the batch axis is dynamic."""
        first = self.inputs[0].shape[0] if self.inputs and self.inputs[0].shape else "batch"
        return first if isinstance(first, int) else None

    def to_dict(self, kind: str) -> dict[str, Any]:
        out: dict[str, Any] = {"format": SIDECAR_FORMAT, "version": SIDECAR_VERSION, "kind": kind}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("inputs", "outputs"):
                value = [{"name": t.name, "shape": list(t.shape), "dtype": t.dtype} for t in value]
            elif f.name == "class_names":
                value = list(value)
            out[f.name] = _jsonable(value)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: Path) -> ArtifactMeta:
        """Raises ExportError naming `source` for a foreign or newer sidecar, or missing fields."""
        if data.get("format") != SIDECAR_FORMAT:
            raise ExportError(f"{source} is not a dctq sidecar (no format {SIDECAR_FORMAT!r} marker)")
        if not isinstance(data.get("version"), int) or data["version"] > SIDECAR_VERSION:
            raise ExportError(
                f"{source}: sidecar version {data.get('version')!r} is newer than this dctq; upgrade"
            )
        try:
            return cls(
                arch=data.get("arch"),
                arch_kwargs=dict(data.get("arch_kwargs") or {}),
                class_names=tuple(str(c) for c in data["class_names"]),
                input_kind=str(data["input_kind"]),
                input_size=int(data["input_size"]),
                inputs=tuple(
                    TensorSpec(t["name"], tuple(t["shape"]), t.get("dtype", "float32"))
                    for t in data["inputs"]
                ),
                outputs=tuple(
                    TensorSpec(t["name"], tuple(t["shape"]), t.get("dtype", "float32"))
                    for t in data["outputs"]
                ),
                recipe=data.get("recipe"),
                exporter=data.get("exporter"),
                opset=data.get("opset"),
                versions=dict(data.get("versions") or {}),
                extra=dict(data.get("extra") or {}),
                task=str(data.get("task", "classify")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ExportError(f"{source} is a damaged dctq sidecar ({type(exc).__name__}: {exc})") from None


@dataclasses.dataclass(frozen=True)
class Artifact:
    """A loaded artifact: its path, kind ("checkpoint", "onnx", "torchscript", "program", "engine"),
    metadata, and for checkpoints the rebuilt model (eval mode, CPU)."""

    path: Path
    kind: str
    meta: ArtifactMeta
    checkpoint: LoadedCheckpoint | None = None

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.meta.class_names

    @property
    def extra(self) -> dict[str, Any]:
        """What the model's run recorded: the checkpoint's whole `extra`, else the sidecar's share of it."""
        return self.checkpoint.extra if self.checkpoint is not None else self.meta.extra


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def versions() -> dict[str, str]:
    """Versions of dctq and of the installed export/runtime packages (absent ones are left out)."""
    out = {"dctq": __version__, "torch": torch.__version__}
    for name in ("onnx", "onnxscript", "onnxruntime"):
        try:
            out[name] = __import__(name).__version__
        except ImportError:
            continue
    return out


def sidecar_path(path: Path | str) -> Path:
    """model.onnx -> model.onnx.json."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def write_sidecar(path: Path | str, meta: ArtifactMeta, kind: str) -> Path:
    """Write `meta` atomically beside the artifact at `path`; returns the sidecar path."""
    target = sidecar_path(path)
    write_text_atomic(target, json.dumps(meta.to_dict(kind), indent=2) + "\n")
    return target


def read_sidecar(path: Path | str, *, kind: str | None = None) -> dict[str, Any] | None:
    """The JSON sidecar beside the artifact at `path` (`<path>.json`) as a dict, or None when there is none.

    kind: the artifact kind the sidecar must describe (e.g. "engine").

    Raises:
        ExportError: naming the sidecar, when it is unreadable, not a dctq sidecar, or of another kind.
    """
    target = sidecar_path(path)
    if not target.is_file():
        return None
    try:
        data = json.loads(target.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExportError(f"{target} is not readable JSON ({exc}); re-export the artifact") from None
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
        raise ExportError(f"{target} is not a dctq sidecar (no format {SIDECAR_FORMAT!r} marker)")
    if kind is not None and data.get("kind") != kind:
        raise ExportError(f"{target} describes a {data.get('kind')!r} artifact, not {kind!r}")
    return data


def input_specs(
    input_kind: str, input_size: int, *, with_qt: bool = True, batch: int | str = "batch"
) -> tuple[TensorSpec, ...]:
    """Inputs of a model: DCT y [B, 64, S/8, S/8], cbcr [B, 128, S/16, S/16], qt [B, 3, 64]; RGB x [B, 3, S, S]
    (+ qt [B, 3, 64] when `with_qt`, for QSAM's QABN models)."""
    if input_kind == "dct":
        hb = input_size // 8
        return (
            TensorSpec("y", (batch, 64, hb, hb)),
            TensorSpec("cbcr", (batch, 128, hb // 2, hb // 2)),
            TensorSpec("qt", (batch, 3, 64)),
        )
    specs = (TensorSpec("x", (batch, 3, input_size, input_size)),)
    return (*specs, TensorSpec("qt", (batch, 3, 64))) if with_qt else specs


def needs_qt(model: nn.Module) -> bool:
    """Whether the model reads qt: DCT models always, RGB models when QABN routes on it."""
    if getattr(model, "input_kind", None) == "dct":
        return True
    return is_qabn(model)


def describe_model(
    model: nn.Module | LoadedCheckpoint,
    *,
    batch: int | str = "batch",
    exporter: str | None = None,
    opset: int | None = None,
) -> ArtifactMeta:
    """ArtifactMeta of a model or loaded checkpoint (arch and class names known only for checkpoints).

    Raises ModelError when the model has no `input_kind`/`input_size`/`num_classes` (not a dctq model).
    """
    loaded = model if isinstance(model, LoadedCheckpoint) else None
    module = loaded.model if loaded is not None else model
    kind, size = getattr(module, "input_kind", None), getattr(module, "input_size", None)
    task = getattr(module, "task", "classify")
    if task != "classify" and kind in ("dct", "rgb") and isinstance(size, int):
        # Not a logits model: its exports describe themselves (deploy.export.autoencoder); the checkpoint's
        # meta says what it is and what it reads.
        return ArtifactMeta(
            arch=loaded.arch if loaded else None,
            arch_kwargs=dict(loaded.arch_kwargs) if loaded else {},
            class_names=(),
            input_kind=kind,
            input_size=size,
            inputs=input_specs(kind, size, with_qt=False, batch=batch),
            outputs=(),
            recipe=dict(loaded.extra[QUANT_RECIPE_KEY])
            if loaded and loaded.extra.get(QUANT_RECIPE_KEY)
            else None,
            exporter=exporter,
            opset=opset,
            versions=versions(),
            extra=_jsonable({k: v for k, v in (loaded.extra if loaded else {}).items() if k == "epoch"}),
            task=task,
        )
    classes = getattr(module, "num_classes", None)
    if kind not in ("dct", "rgb") or not isinstance(size, int) or not isinstance(classes, int):
        raise ModelError(
            f"{type(module).__name__} is not a dctq model (needs input_kind, input_size, num_classes); "
            "build it with dctq.models.create_model"
        )
    names = (
        tuple(loaded.class_names)
        if loaded is not None and loaded.class_names
        else tuple(map(str, range(classes)))
    )
    recipe = None
    if loaded is not None and loaded.extra.get(QUANT_RECIPE_KEY):
        recipe = dict(loaded.extra[QUANT_RECIPE_KEY])
    else:
        found = recipe_of(module)
        recipe = found.to_dict() if found is not None else None
    extra = {k: v for k, v in (loaded.extra if loaded else {}).items() if k in ("qabn", "qsam", "epoch")}
    return ArtifactMeta(
        arch=loaded.arch if loaded else None,
        arch_kwargs=dict(loaded.arch_kwargs) if loaded else {},
        class_names=names,
        input_kind=kind,
        input_size=size,
        inputs=input_specs(kind, size, with_qt=needs_qt(module), batch=batch),
        outputs=(TensorSpec("logits", (batch, classes)),),
        recipe=recipe,
        exporter=exporter,
        opset=opset,
        versions=versions(),
        extra=_jsonable(extra),
    )


# ------------------------------------------------------------------------------- any artifact


def _onnx_meta(path: Path) -> ArtifactMeta:
    """Metadata read from an ONNX graph without a sidecar: input names and shapes; classes as numbers."""

    model = load_onnx(path, external_data=False)

    def spec(value: Any) -> TensorSpec:
        dims = value.type.tensor_type.shape.dim
        shape = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "batch") for d in dims)
        return TensorSpec(value.name, shape)

    inits = {i.name for i in model.graph.initializer}
    inputs = tuple(spec(v) for v in model.graph.input if v.name not in inits)
    outputs = tuple(spec(v) for v in model.graph.output)
    names = [t.name for t in inputs]
    if names[:3] == list(DCT_INPUTS) and isinstance(inputs[0].shape[-1], int):
        kind, size = "dct", 8 * int(inputs[0].shape[-1])
    elif names and names[0] == "x" and isinstance(inputs[0].shape[-1], int):
        kind, size = "rgb", int(inputs[0].shape[-1])
    else:
        raise ExportError(
            f"{path} has inputs {names} and no sidecar {sidecar_path(path).name}; dctq needs inputs named "
            "y, cbcr, qt (DCT) or x [, qt] (RGB): export it with `dctq export`"
        )
    classes = outputs[0].shape[-1] if outputs and isinstance(outputs[0].shape[-1], int) else 0
    quantized = any(n.op_type == "QuantizeLinear" for n in model.graph.node)
    opset = opset_of(model)
    return ArtifactMeta(
        arch=None,
        arch_kwargs={},
        class_names=tuple(map(str, range(classes))),
        input_kind=kind,
        input_size=size,
        inputs=inputs,
        outputs=outputs,
        recipe={"type": "unknown"} if quantized else None,
        opset=opset,
    )


def artifact_kind(path: Path | str) -> str:
    """The kind of artifact by suffix. Raises DctqError for an unknown suffix."""
    suffix = Path(path).suffix.lower()
    if suffix not in KINDS:
        raise DctqError(
            f"{path}: unknown artifact type {suffix or '(no suffix)'!r}; expected one of {', '.join(sorted(KINDS))}"
        )
    return KINDS[suffix]


def load_artifact(path: Path | str) -> Artifact:
    """Load any artifact's metadata (and, for a checkpoint, its model) by file suffix.

    Raises DctqError (unknown suffix, missing file), ModelError (bad checkpoint), ExportError
    (bad or missing sidecar where one is needed).
    """
    path = Path(path)
    kind = artifact_kind(path)
    if not path.is_file():
        raise DctqError(f"artifact not found: {path}")
    if kind == "checkpoint":
        loaded = load_checkpoint(path)
        return Artifact(path, kind, describe_model(loaded), loaded)
    found = read_sidecar(path)
    if found is not None:
        return Artifact(path, kind, ArtifactMeta.from_dict(found, sidecar_path(path)))
    if kind == "onnx":
        logger.warning("%s has no sidecar %s; class names are numbers", path, sidecar_path(path).name)
        return Artifact(path, kind, _onnx_meta(path))
    raise ExportError(
        f"{path} has no sidecar {sidecar_path(path).name} describing its inputs; re-export it with `dctq export`"
    )
