"""One base for the frozen option dataclasses dctq saves in checkpoints, sidecars and data files.

Design: `Config` is a mixin for `@dataclass(frozen=True)` classes. It is not a dataclass itself, so it
adds no fields and leaves each subclass's field order, defaults and `__post_init__` alone; a subclass
keeps validating itself on construction with `check()` and only declares, as class attributes:

  VERSION  the version it writes; bump it when a field changes meaning.
  READS    the versions `from_dict` accepts (VERSION and the older ones it still understands).
  FLAT     the layout it writes (below); fixed per class, because files in the wild hold it.
  UNTYPED  versions whose saved form had no "type" key (flat dicts written before this base).
  error    the ConfigError subclass its messages raise; UPGRADE the fix named for a too-new dict.
  RESUMABLE  fields a resumed run may change (they do not change what is computed).
  SPARSE   fields added after the layout was published: written only when they differ from their
           default, so the files (and hashes) of configs that do not use them stay as they were.
  upgrade()  (a classmethod) the fields of an older READS version as this version means them.

In return it gets:

  to_dict()      the saved form, with plain values only (tuples -> lists, nested dataclasses -> dicts
                 of their fields, recursively), so JSON and `torch.load(weights_only=True)` read it.
  from_dict()    the strict inverse, reading both layouts: another type, a version outside READS,
                 unknown fields (also inside nested dataclasses) or a missing required one raise
                 `error` naming them and the fix; lists come back as tuples where the annotation is a
                 tuple, dicts as the dataclass the annotation names.
  fields_dict()  the plain fields alone, for field-by-field comparisons.
  changes()      the fields where a saved run's config and the current one differ, apart from RESUMABLE:
                 the one compatibility check behind every --resume (training, synthesis) and every
                 reuse of a saved file.

Layouts (a field may therefore not be called "type", "version" or "fields"):

  nested  {"type": "TrainConfig", "version": 1, "fields": {...}}: the default (TrainConfig, MetaConfig).
  flat    {"type": "QuantRecipe", <fields>, "version": 1}: QuantRecipe, SynthConfig and ZeroShotConfig,
          whose dicts were published flat before this base and are read by field name: the recipe
          in every quantized checkpoint, ONNX and engine sidecar (whose recipe_sha256 hashes it);
          synthetic files' `config`; `dctq quantize --json` and `dctq synthesize --json`.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, TypeVar

from .errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")
"""What a config's `device` may say: "auto" takes CUDA when present (calibration.distributed)."""

RESERVED = ("type", "version", "fields")
"""Keys of the saved form; no config field may use them."""

C = TypeVar("C", bound="Config")


def check(ok: bool, message: str, error: type[ConfigError] = ConfigError) -> None:
    """Raise `error(message)` unless `ok`: one rule per line in a config's `__post_init__`."""
    if not ok:
        raise error(message)


class Config:
    """Mixin giving a frozen dataclass `to_dict` / `from_dict` / `fields_dict` (see module docstring)."""

    VERSION: ClassVar[int] = 1
    READS: ClassVar[tuple[int, ...]] = (1,)
    FLAT: ClassVar[bool] = False
    UNTYPED: ClassVar[tuple[int, ...]] = ()
    UPGRADE: ClassVar[str] = "upgrade dctq"
    error: ClassVar[type[ConfigError]] = ConfigError
    RESUMABLE: ClassVar[tuple[str, ...]] = ()
    SPARSE: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def upgrade(cls, fields: dict[str, Any], version: int) -> dict[str, Any]:
        """The saved `fields` of `version` (one of READS) as this version reads them: a class whose field
        changed meaning bumps VERSION and fills in here what older files meant. Default: unchanged."""
        return fields

    def changes(self, other: Config) -> dict[str, tuple[Any, Any]]:
        """{field: (self's plain value, other's)} for every field, in name order, where `other` (the same
        config type) differs from this one, apart from RESUMABLE. {} when a run of `other` may continue one
        of `self`. Raises TypeError for another config type.
        """
        if type(other) is not type(self):
            raise TypeError(f"cannot compare a {type(self).__name__} with a {type(other).__name__}")
        mine, theirs = self.fields_dict(), other.fields_dict()
        return {
            name: (mine[name], theirs[name])
            for name in sorted(mine)
            if name not in self.RESUMABLE and mine[name] != theirs[name]
        }

    def fields_dict(self) -> dict[str, Any]:
        """{field name: plain value} in field order (tuples -> lists, dataclasses -> dicts); SPARSE fields
        only when they differ from their default."""
        out = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.name in self.SPARSE and value == _default_of(f):
                continue
            out[f.name] = plain(value)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The saved form: {"type", "version", "fields"}, or {"type", <fields>, "version"} when FLAT."""
        name = type(self).__name__
        if self.FLAT:
            return {"type": name, **self.fields_dict(), "version": self.VERSION}
        return {"type": name, "version": self.VERSION, "fields": self.fields_dict()}

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any]) -> C:
        """Inverse of `to_dict`, reading either layout (and untyped flat dicts of UNTYPED versions).

        Raises `cls.error` (a ConfigError) for a non-mapping, another type, a version outside READS,
        unknown or missing fields, and whatever the class's own validation raises.
        """
        name, error = cls.__name__, cls.error
        if not isinstance(data, Mapping):
            raise error(f"a saved {name} must be a mapping, got {type(data).__name__}")
        nested = "fields" in data and set(data) <= set(RESERVED)
        kind, version = data.get("type"), data.get("version")
        untyped = kind is None and not nested and version in cls.UNTYPED
        if kind != name and not untyped:
            raise error(f"not a {name}: type is {kind!r}; pass what {name}.to_dict() saved")
        if type(version) is not int or version not in cls.READS:
            newer = type(version) is int and version > max(cls.READS)
            raise error(
                f"{name} version {version!r} is not supported by this dctq (it reads "
                f"{', '.join(map(str, cls.READS))}); "
                + (f"a newer dctq wrote it: {cls.UPGRADE}" if newer else "it is damaged or not from dctq")
            )
        values = data["fields"] if nested else {k: v for k, v in data.items() if k not in RESERVED}
        if not isinstance(values, Mapping):
            raise error(f"the fields of a saved {name} must be a mapping, got {type(values).__name__}")
        values = cls.upgrade(dict(values), version)
        known = _field_names(cls)
        if unknown := unknown_names(values, known):
            raise error(
                f"{name} (version {version}) has no field {unknown}; it knows "
                f"{', '.join(known)}: remove the others, or {cls.UPGRADE} if a newer dctq wrote them"
            )
        return _build(cls, values, name, error)  # type: ignore[return-value]


def unknown_names(given: Iterable[str], known: Iterable[str]) -> str:
    """The names in `given` that `known` lacks, sorted, quoted and comma-joined ("" when there are
    none): what the unknown-field and unknown-option errors name (configs, calibrator options)."""
    return ", ".join(map(repr, sorted(set(given) - set(known))))


def plain(value: Any) -> Any:
    """`value` with tuples as lists and dataclasses as dicts of their fields, recursively."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    return value


def _default_of(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls) if f.init)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _build(cls: type, values: Mapping[str, Any], where: str, error: type[ConfigError]) -> Any:
    hints = _hints(cls)
    kwargs = {k: _decode(hints[k], v, f"{where}.{k}", error) for k, v in values.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a missing field, or a value of the wrong kind compared in __post_init__
        raise error(f"malformed {where}: {exc}") from None


def _decode(hint: Any, value: Any, where: str, error: type[ConfigError]) -> Any:
    """`value` read back as `hint` says: lists -> tuples, mappings -> dataclasses; the rest as is."""
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        for arg in typing.get_args(hint):
            if typing.get_origin(arg) is tuple or _is_dataclass_type(arg):
                return _decode(arg, value, where, error)
        return value
    if origin is tuple and isinstance(value, list):
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            args = (args[0],) * len(value)
        if len(args) != len(value):
            return tuple(value)  # the class's own validation names the wrong length
        return tuple(
            _decode(a, v, f"{where}[{i}]", error) for i, (a, v) in enumerate(zip(args, value, strict=True))
        )
    if _is_dataclass_type(hint):
        known = _field_names(hint)
        if not isinstance(value, Mapping):
            raise error(f"malformed {where}: expected an object {{{', '.join(known)}}}, got {value!r}")
        if unknown := unknown_names(value, known):
            raise error(
                f"malformed {where}: {hint.__name__} has no field {unknown} (it has {', '.join(known)})"
            )
        return _build(hint, value, where, error)
    return value


def _is_dataclass_type(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)
