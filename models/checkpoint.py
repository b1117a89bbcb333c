"""Checkpoints: the state dict plus everything needed to rebuild the model by name, nothing pickled.

Layout of the `.pt` file (a dict that `torch.load(weights_only=True)` reads):
  format "dctq.checkpoint", version 1, dctq_version, arch, arch_kwargs, class_names, extra,
  state_dict (tensors on CPU; the DCT stem's normalization statistics are buffers in it).
`extra` carries later additions (quantization recipe, `"qabn": {"num_branches": 4}`...).

Keys of `extra` that change the model's structure are rebuilt by *checkpoint transforms*, applied
in registration order between `create_model` and `load_state_dict`: "qabn" (QSAM's BN branches,
registered here) and "quant_recipe" (quantizers, registered by dctq.calibration.quant.checkpoint).
models/ never imports calibration/: a transform not registered yet is found through the entry points
of the installed distributions (group TRANSFORM_ENTRY_POINTS; dctq declares "quant_recipe" in its
pyproject.toml), so a quantized checkpoint loads with `dctq.models.load_checkpoint` alone, and other
packages can add transforms the same way.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import __version__
from ..common.errors import ModelError
from ..common.files import atomic_path
from ..common.torch_files import load_torch_file
from .registry import create_model, is_model

logger = logging.getLogger(__name__)

FORMAT = "dctq.checkpoint"
VERSION = 1
_PLAIN_SCALARS = (str, int, float, bool, type(None))

CheckpointTransform = Callable[[nn.Module, Any, Path], nn.Module]
"""(model, extra[key], checkpoint path) -> the model to load the weights into (may be a new one)."""

_TRANSFORMS: dict[str, CheckpointTransform] = {}
TRANSFORM_ENTRY_POINTS = "dctq.checkpoint_transforms"
"""Entry-point group naming, per `extra` key, the checkpoint transform that rebuilds it."""


@dataclasses.dataclass(frozen=True)
class LoadedCheckpoint:
    """A checkpoint read back: the rebuilt model (eval mode, CPU unless map_location says otherwise)."""

    model: nn.Module
    arch: str
    arch_kwargs: dict[str, Any]
    class_names: list[str]
    extra: dict[str, Any]

    def with_model(self, model: nn.Module) -> LoadedCheckpoint:
        """The same checkpoint around another model of its architecture, e.g. its quantized copy
        (`ckpt.with_model(ptq(ckpt.model, ...))`), so exports keep its architecture and class names."""
        return dataclasses.replace(self, model=model)


def _check_plain(value: Any, where: str) -> None:
    """Raise ModelError unless `value` is tensors / str / numbers / bools / None in lists, tuples, dicts."""
    if isinstance(value, _PLAIN_SCALARS) or isinstance(value, torch.Tensor):
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ModelError(f"{where} has a non-string key {key!r}; checkpoints keep plain data only")
            _check_plain(item, f"{where}[{key!r}]")
        return
    raise ModelError(
        f"{where} is a {type(value).__name__}; checkpoints keep tensors and plain data only "
        "(convert with .tolist(), str(), or dataclasses.asdict())"
    )


def save_checkpoint(
    path: Path | str,
    model: nn.Module,
    *,
    arch: str,
    arch_kwargs: dict[str, Any],
    class_names: list[str],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write `model`'s weights and its rebuild recipe to `path` atomically; returns the path.

    Raises ModelError for an unregistered `arch`, non-plain `arch_kwargs`/`extra` (a class or a
    numpy array would need unpickling), or class names that are not strings.
    """
    payload = checkpoint_payload(
        model, arch=arch, arch_kwargs=arch_kwargs, class_names=class_names, extra=extra
    )
    return write_checkpoint(path, payload)


def write_checkpoint(path: Path | str, payload: dict[str, Any]) -> Path:
    """Write a `checkpoint_payload` to `path` atomically (complete or absent, even when killed); returns
    the path. The training loop keeps the payload in its resumable state and writes it again from there."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    logger.info("saved %s checkpoint to %s", payload["arch"], path)
    return path


def checkpoint_payload(
    model: nn.Module,
    *,
    arch: str,
    arch_kwargs: dict[str, Any],
    class_names: list[str],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The dict a checkpoint file holds (module docstring), checked as `save_checkpoint` says."""
    if not is_model(arch):
        create_model(arch)  # raises the unknown-name error with close matches
    _check_plain(arch_kwargs, "arch_kwargs")
    _check_plain(extra or {}, "extra")
    if not all(isinstance(c, str) for c in class_names):
        raise ModelError("class_names must be a list of strings")
    num_classes = getattr(model, "num_classes", None)
    if num_classes is not None and class_names and len(class_names) != num_classes:
        raise ModelError(f"{len(class_names)} class names for a model with {num_classes} outputs")
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "dctq_version": __version__,
        "arch": arch,
        "arch_kwargs": dict(arch_kwargs),
        "class_names": list(class_names),
        "extra": dict(extra or {}),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    return payload


def _read(path: Path, map_location: str | torch.device) -> dict[str, Any]:
    if not path.exists():  # a FIFO or a device is refused, by name, in load_torch_file
        raise ModelError(f"checkpoint not found: {path}")
    payload = load_torch_file(path, "dctq checkpoint", ModelError, fmt=FORMAT, map_location=map_location)
    version = payload.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise ModelError(
            f"{path} has checkpoint version {version!r}; this dctq reads up to {VERSION}, upgrade dctq"
        )
    for key, kind in (
        ("arch", str),
        ("arch_kwargs", dict),
        ("class_names", list),
        ("extra", dict),
        ("state_dict", dict),
    ):
        if not isinstance(payload.get(key), kind):
            raise ModelError(f"{path} is damaged: field {key!r} is missing or not a {kind.__name__}")
    return payload


def _check_contents(payload: dict[str, Any], path: Path) -> None:
    """Raise ModelError for class names that are not strings, state-dict entries that are not tensors,
    and weights holding NaN or infinity (a damaged file or a diverged run: every prediction would be junk)."""
    names = payload["class_names"]
    bad = [c for c in names if not isinstance(c, str)]
    if bad:
        raise ModelError(f"{path} is damaged: class names must be strings, got {bad[0]!r}")
    for name, value in payload["state_dict"].items():
        if not isinstance(value, torch.Tensor):
            raise ModelError(
                f"{path} is damaged: state_dict[{name!r}] is a {type(value).__name__}, not a tensor"
            )
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ModelError(
                f"{path}: weight {name!r} holds NaN or infinite values (a damaged file, or a training run "
                "that diverged); use an earlier checkpoint"
            )


def register_checkpoint_transform(key: str, fn: CheckpointTransform) -> None:
    """Rebuild step for checkpoints whose `extra[key]` is set: `fn(model, extra[key], path)` runs after
    `create_model` (and after the transforms registered before it) and before the weights are loaded.

    Registering a key again replaces its function (module reloads) but keeps its place in the order.
    """
    if not isinstance(key, str) or not key:
        raise ModelError(f"checkpoint transform key must be a non-empty string, got {key!r}")
    if not callable(fn):
        raise ModelError(f"checkpoint transform for {key!r} must be callable, got {type(fn).__name__}")
    _TRANSFORMS[key] = fn


@functools.cache
def _declared_transforms() -> dict[str, importlib.metadata.EntryPoint]:
    """The transforms installed distributions declare, by `extra` key (read once per process)."""
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=TRANSFORM_ENTRY_POINTS)}


def _transform_keys(extra: dict[str, Any], path: Path) -> list[str]:
    """Keys of `extra` to rebuild, in registration order (loading declared transforms on first need)."""
    missing = [key for key in extra if extra[key] and key not in _TRANSFORMS]
    declared = _declared_transforms() if missing else {}
    for key in missing:
        entry = declared.get(key)
        if entry is None:
            continue  # plain data (epoch, train_config, ...), not a structural key
        try:
            fn = entry.load()
        except Exception as exc:  # an entry point may fail to import in many ways
            raise ModelError(
                f"{path} needs {entry.value} to rebuild its {key!r} ({type(exc).__name__}: {exc}); "
                "reinstall dctq (pip install dctq, or pip install -e . in a checkout)"
            ) from None
        if key not in _TRANSFORMS:
            register_checkpoint_transform(key, fn)
    return [key for key in _TRANSFORMS if extra.get(key)]


def _apply_qabn(model: nn.Module, spec: Any, path: Path) -> nn.Module:
    # Imported when a checkpoint needs it, so a damaged install fails only for QSAM checkpoints, clearly.
    try:
        from .qabn import apply_qabn
    except ImportError as exc:
        raise ModelError(
            f"{path} holds a QABN model but dctq.models.qabn cannot be imported ({exc})"
        ) from None
    kwargs = spec if isinstance(spec, dict) else {}
    return apply_qabn(model, **kwargs)


register_checkpoint_transform("qabn", _apply_qabn)


def _tensor_bytes(tensors: Any) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def _check_model_size(path: Path, arch: str, arch_kwargs: dict[str, Any], state_dict: dict[str, Any]) -> None:
    """Refuse architecture arguments that build a model larger than the weights the file holds: every
    tensor of a dctq model is in its state dict, so a larger model means arguments altered to make the
    loader allocate (and initialise) gigabytes, e.g. num_classes=10**9 beside a few KB of weights. The
    model is first built on the "meta" device, which allocates nothing."""
    try:
        with torch.device("meta"):
            shell = create_model(arch, **arch_kwargs)
    except Exception:  # the real build below reports bad arguments, naming the file
        return
    needed, stored = _tensor_bytes(shell.state_dict().values()), _tensor_bytes(state_dict.values())
    if needed > 2 * stored + (64 << 20):  # smaller gaps: load_state_dict names the missing keys
        raise ModelError(
            f"{path}: {arch} with arch_kwargs {arch_kwargs} is a model of {needed / 2**20:.0f} MiB, but the file "
            f"holds {stored / 2**20:.1f} MiB of weights; its architecture arguments were altered or it is damaged"
        )


def load_checkpoint(path: Path | str, map_location: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Rebuild the model from the registry and load its weights; the model is returned in eval mode.

    Checkpoint transforms (see module docstring) rebuild QABN and quantized models first: a
    quantized checkpoint comes back as the fake-quant model, its quantizers calibrated.
    Raises ModelError for a missing, corrupt or foreign file, an unknown architecture, or weights
    that do not fit the rebuilt model (names the first differing keys); QuantizationError for a
    quantization recipe this dctq cannot read.
    """
    path = Path(path)
    payload = _read(path, map_location)
    arch, arch_kwargs, extra = payload["arch"], payload["arch_kwargs"], payload["extra"]
    _check_contents(payload, path)
    _check_model_size(path, arch, arch_kwargs, payload["state_dict"])
    try:
        model = create_model(arch, **arch_kwargs)
    except ModelError as exc:
        raise ModelError(f"{path}: cannot rebuild architecture: {exc}") from None
    for key in _transform_keys(extra, path):
        try:
            model = _TRANSFORMS[key](model, extra[key], path)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:  # a malformed entry of extra
            raise ModelError(
                f"{path} is damaged: its {key!r} entry {extra[key]!r} cannot be applied "
                f"({type(exc).__name__}: {exc})"
            ) from None
    num_classes = getattr(model, "num_classes", None)
    names = payload["class_names"]
    if names and isinstance(num_classes, int) and len(names) != num_classes:
        raise ModelError(
            f"{path} is damaged: {len(names)} class names for a model with {num_classes} outputs; "
            "predictions would be labelled wrongly"
        )
    try:
        result = model.load_state_dict(payload["state_dict"], strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise ModelError(
            f"{path}: weights do not fit {arch!r}: {str(exc).splitlines()[-1].strip()[:300]}"
        ) from None
    if result.missing_keys or result.unexpected_keys:
        raise ModelError(
            f"{path}: weights do not fit {arch!r}: missing {result.missing_keys[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}"
        )
    model.to(map_location)
    model.eval()
    return LoadedCheckpoint(
        model=model,
        arch=arch,
        arch_kwargs=dict(arch_kwargs),
        class_names=list(payload["class_names"]),
        extra=dict(extra),
    )
