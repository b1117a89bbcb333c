"""Artifacts: checkpoints (.pt, float or quantized), ONNX (.onnx), TorchScript (.ts), torch.export
programs (.pt2) and TensorRT plans (.engine), each described by one `ArtifactMeta`.

Exported files carry a JSON sidecar `<file>.json` (model.onnx -> model.onnx.json):

    {"format": "dctq.artifact", "version": 1, "kind": "onnx", "arch": ..., "arch_kwargs": {...},
     "class_names": [...], "input_kind": "dct", "input_size": 32,
     "inputs": [{"name": "y", "shape": ["batch", 64, 4, 4], "dtype": "float32"}, ...],
     "outputs": [{"name": "logits", "shape": ["batch", 10], "dtype": "float32"}],
     "recipe": QuantRecipe.to_dict() | null, "exporter": "dynamo", "opset": 18,
     "versions": {"dctq": ..., "torch": ..., "onnx": ...}, "extra": {...},
     "artifact": {"name": "model.onnx", "size": 123456, "sha256": "..."}}

"artifact" binds the sidecar to the file it describes: `read_sidecar` refuses a sidecar whose file has
another size or hash, so an export killed between its two writes (or a model replaced by hand) can never
pair one model with another's class names. Exporters write the sidecar first (bound to the finished
temporary file), then rename the artifact into place: a kill leaves the old pair, or a new sidecar that
refuses the old file, never an artifact without its sidecar.

Checkpoints, float or quantized, are read by `dctq.models.checkpoint.load_checkpoint` (a quantized
one, written by `dctq.calibration.quant.checkpoint.save_quantized`, holds `"quant_recipe"` in its
`extra` and comes back as the calibrated fake-quant model).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import __version__
from ..calibration.quant.checkpoint import QUANT_RECIPE_KEY
from ..calibration.quant.model import recipe_of
from ..common.errors import DctqError, ExportError, ModelError, UntrustedArtifactError
from ..common.files import open_regular_file, read_regular_file, write_text_atomic
from ..models.checkpoint import LoadedCheckpoint, load_checkpoint
from ..models.qabn import is_qabn
from ..models.registry import task_of
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
MAX_SIDECAR_BYTES = 16 << 20
"""A sidecar is a few KiB of JSON; anything above 16 MiB is not one."""
MAX_INPUT_SIZE = 16384
"""Largest input size (pixels) a sidecar may declare."""
MAX_DIMENSION = 1 << 20
"""Largest fixed dimension (a batch, channels, classes) a sidecar may declare."""
CODE_KINDS = {
    "torchscript": "a TorchScript archive: it holds code, which runs when the model is loaded and called",
    "program": (
        "a torch.export program: torch.export.load unpickles parts of it (sample inputs, pickled weights and "
        "constants) without restriction, which runs any code stored there"
    ),
    "engine": "a TensorRT engine: NVIDIA calls serialized engines executable artifacts (native code)",
}
"""Artifact kinds that are code, not data: loaded only with trust_code=True (`--trust-code`). Checkpoints
(read with torch.load(weights_only=True)) and ONNX files (a protobuf graph of standard operators) are data."""


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
    """What the model computes (models.registry.TASKS): "classify" (outputs logits), "sr" (outputs an image
    `scale` times larger) or "autoencode"; sidecars written before tasks existed are "classify"."""
    scale: int | None = None
    """SR models: the upscaling factor; input_size is then the LR side at which costs are stated."""

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
            meta = cls(
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
                task=str(data.get("task", "classify")),  # sidecars before SR models have none
                scale=data.get("scale"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ExportError(f"{source} is a damaged dctq sidecar ({type(exc).__name__}: {exc})") from None
        meta._check_sizes(source)
        return meta

    def _check_sizes(self, source: Path) -> None:
        """Refuse sizes no dctq export has and that would make a reader allocate without bound: an input
        size of a million pixels (the crop of every image to it), a fixed batch of a billion (each batch
        padded to it)."""
        bad = [] if 0 < self.input_size <= MAX_INPUT_SIZE else [f"input_size {self.input_size}"]
        bad += [
            f"dimension {d!r} of {t.name}"
            for t in (*self.inputs, *self.outputs)
            for d in t.shape
            if not (isinstance(d, str) or (isinstance(d, int) and 0 <= d <= MAX_DIMENSION))
        ]
        if bad:
            raise ExportError(
                f"{source} declares {', '.join(bad[:3])}, out of range for any dctq model; export it again"
            )


@dataclasses.dataclass(frozen=True)
class Artifact:
    """A loaded artifact: its path, kind ("checkpoint", "onnx", "torchscript", "program", "engine"),
    metadata, and for checkpoints the rebuilt model (eval mode, CPU). Runners load the kinds in CODE_KINDS
    only when `trusted` (`require_trusted`)."""

    path: Path
    kind: str
    meta: ArtifactMeta
    checkpoint: LoadedCheckpoint | None = None
    trusted: bool = False
    """The caller vouches for the file (trust_code=True): only then is a kind in CODE_KINDS loaded."""

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


def artifact_binding(path: Path | str, name: str | None = None) -> dict[str, Any]:
    """{"name", "size", "sha256"} of the file at `path` (`name`: the name it will have, for a temporary
    file about to be renamed)."""
    path = Path(path)
    digest = hashlib.sha256()
    with open_regular_file(path) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"name": name or path.name, "size": path.stat().st_size, "sha256": digest.hexdigest()}


def write_sidecar(
    path: Path | str, meta: ArtifactMeta, kind: str, *, artifact_file: Path | str | None = None
) -> Path:
    """Write `meta` atomically beside the artifact at `path`, bound to the artifact's bytes (size and
    sha256, module docstring); returns the sidecar path.

    artifact_file: where the artifact's bytes are now, when it is not at `path` yet (the temporary file
    an exporter renames onto `path` after this call); default `path`.
    """
    path = Path(path)
    target = sidecar_path(path)
    data = {**meta.to_dict(kind), "artifact": artifact_binding(artifact_file or path, path.name)}
    write_text_atomic(target, json.dumps(data, indent=2) + "\n")
    return target


def check_binding(path: Path, data: dict[str, Any], sidecar: Path) -> None:
    """Raise ExportError when the sidecar `data` was written for another file than the one at `path`."""
    bound = data.get("artifact")
    if not isinstance(bound, dict):
        logger.warning("%s has no artifact size and hash (an older dctq wrote it); not checked against %s",
                       sidecar, path.name)  # fmt: skip
        return
    size = path.stat().st_size
    if bound.get("size") != size or artifact_binding(path)["sha256"] != bound.get("sha256"):
        raise ExportError(
            f"{path} does not match its sidecar {sidecar.name} (written for a file of {bound.get('size')} bytes, "
            f"sha256 {str(bound.get('sha256'))[:12]}..., this one has {size} bytes): an export was interrupted "
            "or one of the two files was replaced; export the model again with `dctq export`"
        )


def read_sidecar(path: Path | str, *, kind: str | None = None, check: bool = True) -> dict[str, Any] | None:
    """The JSON sidecar beside the artifact at `path` (`<path>.json`) as a dict, or None when there is none.

    kind: the artifact kind the sidecar must describe (e.g. "engine"). check: refuse a sidecar bound to
    another file than the one at `path` (`check_binding`); only when that file exists.

    Raises:
        ExportError: naming the sidecar, when it is unreadable, not a dctq sidecar, of another kind, or
            written for another file.
    """
    path = Path(path)
    target = sidecar_path(path)
    if not target.is_file():
        return None
    try:
        data = json.loads(read_regular_file(target, max_bytes=MAX_SIDECAR_BYTES).decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ExportError(f"{target} is not readable JSON ({exc}); re-export the artifact") from None
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
        raise ExportError(f"{target} is not a dctq sidecar (no format {SIDECAR_FORMAT!r} marker)")
    if kind is not None and data.get("kind") != kind:
        raise ExportError(f"{target} describes a {data.get('kind')!r} artifact, not {kind!r}")
    if check and path.is_file():
        check_binding(path, data, target)
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


def sr_specs(
    channels: int, scale: int, batch: int | str = "batch"
) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """(inputs, outputs) of an SR model: x [B, C, height, width] -> image [B, C, scale*height, scale*width],
    the spatial axes dynamic (fully convolutional)."""
    return (
        (TensorSpec("x", (batch, channels, "height", "width")),),
        (TensorSpec("image", (batch, channels, f"{scale}*height", f"{scale}*width")),),
    )


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
    if task_of(module) == "sr":
        return _describe_sr(module, loaded, batch, exporter, opset)
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
    extra = {
        k: v
        for k, v in (loaded.extra if loaded else {}).items()
        if k in ("qabn", "qsam", "epoch", "input_policy")
    }
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


def _quant_recipe(module: nn.Module, loaded: LoadedCheckpoint | None) -> dict[str, Any] | None:
    if loaded is not None and loaded.extra.get(QUANT_RECIPE_KEY):
        return dict(loaded.extra[QUANT_RECIPE_KEY])
    found = recipe_of(module)
    return found.to_dict() if found is not None else None


def _describe_sr(
    module: nn.Module,
    loaded: LoadedCheckpoint | None,
    batch: int | str,
    exporter: str | None,
    opset: int | None,
) -> ArtifactMeta:
    inputs, outputs = sr_specs(module.image_channels, module.scale, batch)
    extra = {k: v for k, v in (loaded.extra if loaded else {}).items() if k in ("epoch",)}
    return ArtifactMeta(
        arch=loaded.arch if loaded else None,
        arch_kwargs=dict(loaded.arch_kwargs) if loaded else {},
        class_names=(),
        input_kind="rgb",
        input_size=int(module.input_size),
        inputs=inputs,
        outputs=outputs,
        recipe=_quant_recipe(module, loaded),
        exporter=exporter,
        opset=opset,
        versions=versions(),
        extra=_jsonable(extra),
        task="sr",
        scale=int(module.scale),
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
    kind, size = _foreign_inputs(inputs, outputs, path)
    classes = outputs[0].shape[-1] if isinstance(outputs[0].shape[-1], int) else 0
    quantized = any(n.op_type == "QuantizeLinear" for n in model.graph.node)
    opset = opset_of(model)
    meta = ArtifactMeta(
        arch=None,
        arch_kwargs={},
        class_names=tuple(map(str, range(min(classes, MAX_DIMENSION + 1)))),
        input_kind=kind,
        input_size=size,
        inputs=inputs,
        outputs=outputs,
        recipe={"type": "unknown"} if quantized else None,
        opset=opset,
    )
    meta._check_sizes(path)
    return meta


_NO_META = ArtifactMeta(None, {}, (), "dct", 0, (), ())


def _foreign_inputs(
    inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...], path: Path
) -> tuple[str, int]:
    """(input kind, input size) of an ONNX graph without a sidecar, from its inputs' names and shapes.

    Raises ExportError naming the file unless the inputs are dctq's (y [N, 64, S/8, S/8], cbcr
    [N, 128, S/16, S/16], qt [N, 3, 64]; or x [N, 3, S, S] [, qt]) with fixed sizes, and the one output
    is [N, classes].
    """
    found = ", ".join(f"{t.name} {list(t.shape)}" for t in inputs) or "none"
    names = [t.name for t in inputs]
    roles = [t.role for t in inputs]
    kind, size = None, 0
    if names == list(DCT_INPUTS) and roles == ["luma", "chroma", "qt"]:
        (_, _, hb, wb), (_, _, hc, wc) = inputs[0].dims, inputs[1].dims
        if hb is not None and hb == wb and hb % 2 == 0 and (hc, wc) == (hb // 2, wb // 2):
            kind, size = "dct", 8 * hb
    elif names in (["x"], ["x", "qt"]) and roles[0] == "rgb" and roles[1:] in ([], ["qt"]):
        _, _, h, w = inputs[0].dims
        if h is not None and h == w:
            kind, size = "rgb", h
    if kind is None:
        raise ExportError(
            f"{path} has no sidecar {sidecar_path(path).name} and its inputs ({found}) are not dctq's: y "
            "[N, 64, S/8, S/8], cbcr [N, 128, S/16, S/16], qt [N, 3, 64] (DCT) or x [N, 3, S, S] [, qt] (RGB) "
            "with a fixed square size S; export the model with `dctq export`, which writes the sidecar"
        )
    if len(outputs) != 1 or len(outputs[0].shape) != 2:
        shapes = ", ".join(f"{t.name} {list(t.shape)}" for t in outputs) or "none"
        raise ExportError(
            f"{path} has no sidecar {sidecar_path(path).name} and its outputs ({shapes}) are not one "
            "[N, classes] tensor of logits; export the model with `dctq export`"
        )
    return kind, size


def artifact_kind(path: Path | str) -> str:
    """The kind of artifact by suffix. Raises DctqError for an unknown suffix."""
    suffix = Path(path).suffix.lower()
    if suffix not in KINDS:
        raise DctqError(
            f"{path}: unknown artifact type {suffix or '(no suffix)'!r}; expected one of {', '.join(sorted(KINDS))}"
        )
    return KINDS[suffix]


def require_trusted(artifact: Artifact) -> None:
    """Raise UntrustedArtifactError when `artifact` is a kind that holds code (CODE_KINDS) and the caller
    did not vouch for it (Artifact.trusted, from load_artifact(..., trust_code=True)). Every runner calls
    it before handing the file to torch.jit, torch.export or TensorRT."""
    if artifact.kind in CODE_KINDS and not artifact.trusted:
        raise UntrustedArtifactError(
            f"{artifact.path} is {CODE_KINDS[artifact.kind]}; dctq loads it only for a file you made or got "
            "from a source you trust: pass --trust-code (trust_code=True). For a model from others ask for "
            "its .onnx file or .pt checkpoint, which dctq reads as data"
        )


def load_artifact(path: Path | str, *, trust_code: bool = False) -> Artifact:
    """Load any artifact's metadata (and, for a checkpoint, its model) by file suffix.

    trust_code: vouch for a file whose kind holds code (CODE_KINDS: .ts, .pt2, .engine); without it
        such a file is refused before anything but its JSON sidecar is read.

    Raises DctqError (unknown suffix, missing file), UntrustedArtifactError (a code kind without
    trust_code), ModelError (bad checkpoint), ExportError (bad or missing sidecar where one is needed).
    """
    path = Path(path)
    kind = artifact_kind(path)
    if not path.exists():
        raise DctqError(f"artifact not found: {path}")
    if not path.is_file():  # a folder, a FIFO (which would block the reader) or a device
        raise DctqError(f"{path} is not a regular file; give the artifact file itself")
    require_trusted(Artifact(path, kind, _NO_META, trusted=trust_code))
    if kind == "checkpoint":
        loaded = load_checkpoint(path)
        return Artifact(path, kind, describe_model(loaded), loaded)
    found = read_sidecar(path)
    if found is not None:
        return Artifact(path, kind, ArtifactMeta.from_dict(found, sidecar_path(path)), trusted=trust_code)
    if kind == "onnx":
        meta = _onnx_meta(path)
        logger.warning("%s has no sidecar %s; class names are numbers", path, sidecar_path(path).name)
        return Artifact(path, kind, meta)
    raise ExportError(
        f"{path} has no sidecar {sidecar_path(path).name} describing its inputs; re-export it with `dctq export`"
    )
