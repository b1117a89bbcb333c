"""Architectures by name: `@register_model` fills the registry, `create_model` builds from it.

Builders are functions `(**kwargs) -> nn.Module`; the models they return carry `input_kind` ("dct" or
"rgb"), `input_size` (pixels) and the attributes of their *task* (TASK_ATTRIBUTES): classifiers
("classify", builders take `num_classes`) carry `num_classes`, super-resolution models ("sr") `scale`
and `image_channels`, autoencoders ("autoencode", models.dq: images -> codes -> images) nothing more;
models of a task other than "classify" carry a `task` attribute.

The task is the one switch of the commands that treat model kinds differently (`dctq train`,
`evaluate`, `predict`, `quantize`, `export`): they look up `ModelInfo.task` (or `task_of(model)`) and
dispatch on it; training through one `calibration.train.tasks.TrainTask` per task. A new kind of model
adds its name to TASK_ATTRIBUTES, a TrainTask and a case where those commands dispatch, never a second
mechanism. An entry may also carry `train_defaults`: TrainConfig options (by field name, plain values)
that `dctq train` uses for this model where the user gives none; they go over the task's defaults
(`calibration.train.config.TASK_DEFAULTS`), and `calibration.train.config.config_for` is the one place
that combines them. Registration happens
when `dctq.models` is imported (its __init__ imports the architecture modules); the functions here
import it themselves, so `dctq.models.registry` also works on its own.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from ..common.errors import ModelError

INPUT_KINDS = ("dct", "rgb")
TASK_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "classify": ("input_kind", "input_size", "num_classes"),
    "sr": ("input_kind", "input_size", "scale", "image_channels"),
    "autoencode": ("input_kind", "input_size"),
}
"""The attributes a built model of each task must carry (checked by create_model)."""
TASKS = tuple(TASK_ATTRIBUTES)

Builder = Callable[..., nn.Module]


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about an architecture without building it."""

    name: str
    input_kind: str
    input_size: int
    description: str
    task: str = "classify"
    """What the model does: a key of TASK_ATTRIBUTES ("classify", "sr", "autoencode")."""
    train_defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """TrainConfig options by field name that `dctq train` uses for this model (over its task's defaults)."""


_MODELS: dict[str, tuple[ModelInfo, Builder]] = {}


def register_model(
    name: str,
    *,
    input_kind: str,
    input_size: int,
    description: str,
    task: str = "classify",
    train_defaults: Mapping[str, Any] | None = None,
) -> Callable[[Builder], Builder]:
    """Decorator registering a builder under `name` for `task` (a key of TASK_ATTRIBUTES; train_defaults: see the module docstring).

    Raises ModelError for an invalid input kind/size or task, or a name already taken by another builder
    (re-registering the same function, as on a module reload, replaces it).
    """
    if task not in TASK_ATTRIBUTES:
        raise ModelError(f"model {name!r}: task must be one of {TASKS}, got {task!r}")
    if input_kind not in INPUT_KINDS:
        raise ModelError(f"model {name!r}: input_kind must be one of {INPUT_KINDS}, got {input_kind!r}")
    if input_size < 1 or (input_kind == "dct" and input_size % 16):
        raise ModelError(
            f"model {name!r}: input_size {input_size} must be positive (a multiple of 16 for DCT)"
        )

    def decorator(fn: Builder) -> Builder:
        previous = _MODELS.get(name)
        if previous is not None:
            old = previous[1]
            if (old.__module__, old.__qualname__) != (fn.__module__, fn.__qualname__):
                raise ModelError(
                    f"model name {name!r} is already registered by {old.__module__}.{old.__qualname__}"
                )
        info = ModelInfo(name, input_kind, input_size, description, task, dict(train_defaults or {}))
        _MODELS[name] = (info, fn)
        return fn

    return decorator


def _ensure_registered() -> None:
    # The architecture modules import this one to register, so they are imported here, at first use, and
    # not at the top (a cycle); importing them runs their decorators (a no-op once imported).
    from . import dct_cifar, dct_variants, rgb  # noqa: F401
    from .dq import presets  # noqa: F401
    from .sr import edsr  # noqa: F401


def _unknown(name: str) -> ModelError:
    names = sorted(_MODELS)
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return ModelError(
        f"unknown model {name!r}.{hint} Run `dctq models` to list the {len(names)} available ones."
    )


def get_model_info(name: str) -> ModelInfo:
    """The ModelInfo of `name`. Raises ModelError (listing close matches) when unknown."""
    _ensure_registered()
    if name not in _MODELS:
        raise _unknown(name)
    return _MODELS[name][0]


def is_model(name: str) -> bool:
    """Whether `name` is a registered architecture."""
    _ensure_registered()
    return name in _MODELS


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build architecture `name`; kwargs that are None are dropped so unset CLI options keep defaults.

    Raises ModelError for an unknown name (with close matches) or arguments the builder rejects.
    """
    info = get_model_info(name)
    builder = _MODELS[name][1]
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    try:
        inspect.signature(builder).bind(**kwargs)
    except TypeError as exc:
        params = ", ".join(inspect.signature(builder).parameters)
        raise ModelError(
            f"model {name!r} does not take these arguments ({exc}); it takes: {params}"
        ) from None
    try:
        model = builder(**kwargs)
    except (TypeError, ValueError) as exc:  # an argument of the right name with a value it cannot take
        raise ModelError(f"model {name!r} cannot be built from the arguments {kwargs}: {exc}") from exc
    for attr in TASK_ATTRIBUTES[info.task]:
        if not hasattr(model, attr):
            raise ModelError(f"builder of {name!r} returned a model without the `{attr}` attribute")
    if model.input_kind != info.input_kind:
        raise ModelError(
            f"builder of {name!r} returned a {model.input_kind!r} model, registered as {info.input_kind!r}"
        )
    if getattr(model, "task", "classify") != info.task:
        raise ModelError(
            f"builder of {name!r} returned a {getattr(model, 'task', 'classify')!r} model, registered as {info.task!r}"
        )
    return model


def list_models(pattern: str = "*", *, task: str | None = None) -> list[ModelInfo]:
    """Registered architectures whose name matches the shell-style `pattern` (and of `task`, when given),
    sorted by name."""
    _ensure_registered()
    return [
        info
        for name, (info, _) in sorted(_MODELS.items())
        if fnmatch.fnmatchcase(name, pattern) and (task is None or info.task == task)
    ]


def task_of(model: nn.Module) -> str:
    """The task of a built model: its `task` attribute, "classify" for models without one."""
    task = getattr(model, "task", "classify")
    return task if isinstance(task, str) else "classify"
