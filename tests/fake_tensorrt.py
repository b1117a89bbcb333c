"""A fake `tensorrt` module whose classes take exactly the signatures of the real TensorRT 11.4 bindings,
and a CPU stand-in for the CUDA device, so the whole build and run path runs on a CPU machine.

    state = FakeState(Scenario(parse_ok=False))           # what the fake TensorRT will do
    trt = make_fake_tensorrt(state)                       # install as sys.modules["tensorrt"]
    device = CpuDevice(state)                             # pass as device= to build_engine / TrtEngine

Conformance: every class and enum comes from the introspection of the real wheel (tests/trt_api.py,
the committed snapshot). A call is bound against the real overloads (argument names, arity, keyword
use, types: SupportsInt, bool, str, Buffer, Dims and its implicit tuple/list conversion, enums of
the right type, instances of the right class) and refused with pybind11's TypeError otherwise; a
member the real class lacks raises AttributeError; a real member the fake does not model raises
NotImplementedError; results are checked against the declared return type. Enum members compare
by identity (pybind11 enums are not equal to ints) and convert with int().

Behaviour, close to TensorRT's where dctq depends on it:
- one logger per process: the first logger handed to a Builder, Runtime or OnnxParser receives every
  message; a different one later is ignored, with TensorRT's warning;
- OnnxParser.parse reads the ONNX bytes (inputs, outputs, their types and dims); build checks the
  optimization profile against them and returns a plan, or None; set_timing_cache refuses a cache of
  another "GPU"; deserialization logs VERBOSE messages;
- an execution context refuses shapes outside the profile and addresses not 256-byte aligned;
  execute_async_v3 warns on the legacy default stream (handle 0), reads the inputs from their
  addresses and writes logits[n, k] = (k + 1) * sum of the means of input n (so a wrong binding
  shows), or, while the stand-in device captures a CUDA graph on that stream, records the launch
  with its addresses; a replay after the context's shapes changed raises (TensorRT would replay
  stale state).

The stand-in device's streams, guard and keep_alive calls append to `state.events`, so tests can
check how the engine orders its work.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import json
import math
import types
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import torch
from trt_api import parse_signature, snapshot

from dctq.deploy.backends.tensorrt.device import CudaDevice

NULLPTR = "pybind11::init(): factory function returned nullptr"
DEFAULT_STREAM_WARNING = (
    "Using default stream in enqueueV3() may lead to performance issues due to additional calls to "
    "cudaStreamSynchronize() by TensorRT to ensure correct synchronization. Please use non-default stream instead."
)


@dataclasses.dataclass
class Scenario:
    """What the fake TensorRT does. version: its __version__. gpu: the "device" timing caches are
    tied to. classes: logits per image."""

    version: str = "11.4.0.106"
    parse_ok: bool = True
    build_ok: bool = True
    builder_fails: bool = False
    refuse_shapes: bool = False
    gpu: str = "H100"
    classes: int = 10


@dataclasses.dataclass
class FakeState:
    """The fake's record: calls (name, details), events (stream order), loggers handed over."""

    scenario: Scenario = dataclasses.field(default_factory=Scenario)
    calls: list[tuple[str, Any]] = dataclasses.field(default_factory=list)
    events: list[tuple[Any, ...]] = dataclasses.field(default_factory=list)
    loggers: list[Any] = dataclasses.field(default_factory=list)
    capturing: Any = None  # (graph, stream handle) while the stand-in device captures

    def called(self, name: str) -> list[Any]:
        return [details for n, details in self.calls if n == name]


# ---------------------------------------------------------------------------------------------
# Conformance to the real signatures


class _Base:
    """Root of the fake classes: attribute access limited to the real class's members."""

    _spec: ClassVar[dict[str, Any]] = {}
    _name = "?"

    def __getattr__(self, name: str) -> Any:
        spec = type(self)._spec
        if name in spec.get("methods", {}) or name in spec.get("properties", {}):
            raise NotImplementedError(
                f"fake tensorrt: {type(self)._name}.{name} exists in TensorRT but is not modelled"
            )
        raise AttributeError(f"'{type(self)._name}' object has no attribute '{name}'")

    def __setattr__(self, name: str, value: Any) -> None:
        if (
            name.startswith("_")
            or type(self)._name != type(self).__name__
            or isinstance(getattr(type(self), name, None), property)
        ):
            object.__setattr__(self, name, value)  # fake state, a Python subclass's fields, or a property
            return
        raise AttributeError(
            f"'{type(self)._name}' object has no attribute '{name}' (pybind11 objects take no new attributes)"
        )


def _classes(trt: Any) -> dict[str, Any]:
    return trt._classes


def accepts(trt: Any, annotation: str, value: Any) -> bool:
    """Whether pybind11 would take `value` for a parameter annotated `annotation`."""
    annotation = annotation.replace("nvinfer1::", "").replace("nvonnxparser::", "").replace("v_1_0::", "")
    # property types are written as results ("int"); the setter takes what the parameter would
    annotation = {"IParserError": "ParserError", "int": "SupportsInt", "float": "SupportsFloat"}.get(
        annotation, annotation
    )
    classes = _classes(trt)
    if annotation == "object":
        return True
    if annotation == "SupportsInt":
        return not isinstance(value, str | float) and hasattr(type(value), "__index__")
    if annotation == "SupportsFloat":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation == "bool":
        return isinstance(value, bool | np.bool_)
    if annotation == "str":
        return isinstance(value, str)
    if annotation == "Buffer":
        try:
            memoryview(value)
        except TypeError:
            return False
        return True
    if annotation in ("tuple", "list"):
        return isinstance(value, tuple if annotation == "tuple" else list)
    if annotation.startswith(("Sequence[", "list[")):
        inner = annotation[annotation.index("[") + 1 : -1]
        return isinstance(value, list | tuple) and all(accepts(trt, inner, v) for v in value)
    if annotation == "Dims":
        return isinstance(value, classes["Dims"]) or (
            isinstance(value, list | tuple) and all(accepts(trt, "SupportsInt", v) for v in value)
        )
    if annotation in classes:
        return isinstance(value, classes[annotation])
    raise AssertionError(f"fake tensorrt cannot check the annotation {annotation!r}; teach accepts()")


def returns_ok(trt: Any, annotation: str, value: Any) -> bool:
    if value is None:
        return True  # pybind11 returns None for a null pointer, whatever the annotation
    if annotation in ("int", "float"):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation.startswith("list["):
        return isinstance(value, list) and all(returns_ok(trt, annotation[5:-1], v) for v in value)
    return accepts(trt, annotation, value)


def check_call(trt: Any, where: str, overloads: list[str], args: tuple, kwargs: dict) -> None:
    """Bind (args, kwargs) to one of `overloads` as pybind11 would; TypeError like pybind11's otherwise."""
    for signature in overloads:
        params, _ = parse_signature(signature)
        if len(args) > len(params):
            continue
        bound = dict(zip([p[0] for p in params], args, strict=False))
        if any(k in bound or k not in [p[0] for p in params] for k in kwargs):
            continue
        bound.update(kwargs)
        if any(name not in bound and default is None for name, _, default in params):
            continue
        if all(
            (value is None and default == "None") or accepts(trt, annotation, value)
            for name, annotation, default in params
            if name in bound
            for value in [bound[name]]
        ):
            return
    shown = "\n".join(f"    {i + 1}. {where}{s}" for i, s in enumerate(overloads))
    raise TypeError(
        f"{where}(): incompatible function arguments. The following argument types are supported:\n{shown}\n\n"
        f"Invoked with: {', '.join(map(repr, args))}{', ' if args and kwargs else ''}"
        f"{', '.join(f'{k}={v!r}' for k, v in kwargs.items())}"
    )


def _checked_method(trt: Any, cls_name: str, name: str, overloads: list[str], fn: Any) -> Any:
    where = f"{cls_name}.{name}" if name != "__init__" else cls_name

    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        check_call(trt, where, overloads, args, kwargs)
        result = fn(self, *args, **kwargs)
        if name != "__init__":
            declared = {parse_signature(s)[1] for s in overloads}
            if not any(returns_ok(trt, r, result) for r in declared):
                raise AssertionError(f"fake {where} returned {result!r}, declared {declared}")
        return result

    method.__name__ = name
    return method


def _checked_property(trt: Any, cls_name: str, name: str, spec: dict[str, Any], prop: property) -> property:
    def fset(self: Any, value: Any) -> None:
        if not accepts(trt, spec["type"], value):
            raise TypeError(f"{cls_name}.{name}: incompatible value {value!r} (takes {spec['type']})")
        prop.fset(self, value)

    if prop.fset is not None and not spec["settable"]:
        raise AssertionError(f"fake {cls_name}.{name} is settable; TensorRT's is read-only")
    return property(prop.fget, fset if prop.fset is not None else None)


def conform(trt: Any, cls: type, spec: dict[str, Any], name: str) -> type:
    """Wrap the members `cls` defines with the real signatures; refuse members TensorRT lacks."""
    cls._spec, cls._name = spec, name
    for attr, member in list(vars(cls).items()):
        if attr.startswith("_") and attr not in (
            "__init__",
            "__len__",
            "__getitem__",
            "__str__",
            "__int__",
            "__bool__",
        ):
            continue
        if isinstance(member, property):
            if attr not in spec["properties"]:
                raise AssertionError(f"fake {name}.{attr}: TensorRT's {name} has no such property")
            setattr(cls, attr, _checked_property(trt, name, attr, spec["properties"][attr], member))
        elif callable(member):
            if attr == "__init__" and not spec["constructible"]:
                continue  # made by the fake only; user code cannot construct these
            if attr not in spec["methods"]:
                raise AssertionError(f"fake {name}.{attr}: TensorRT's {name} has no such method")
            setattr(cls, attr, _checked_method(trt, name, attr, spec["methods"][attr], member))
    return cls


class _Enum:
    """A pybind11 enum member: not equal to ints, int() and index() give its value."""

    def __init__(self, name: str, value: int) -> None:
        object.__setattr__(self, "_n", name)
        object.__setattr__(self, "_v", value)

    name = property(lambda self: self._n)
    value = property(lambda self: self._v)

    def __int__(self) -> int:
        return self._v

    __index__ = __int__

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._v))

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._v == self._v  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return f"<{type(self).__name__}.{self._n}: {self._v}>"


def _make_enum(qualname: str, members: dict[str, int]) -> type:
    cls = type(qualname.split(".")[-1], (_Enum,), {})
    cls.__qualname__ = qualname
    cls.__members__ = {}
    for key, value in sorted(members.items(), key=lambda kv: kv[1]):
        member = cls(key, value)
        setattr(cls, key, member)
        cls.__members__[key] = member
    return cls


# ---------------------------------------------------------------------------------------------
# The module


def _unmodelled(self: Any, *args: Any, **kwargs: Any) -> None:
    raise NotImplementedError(f"fake tensorrt: {type(self)._name} exists in TensorRT but is not modelled")


def make_fake_tensorrt(state: FakeState) -> types.ModuleType:
    """A fresh fake `tensorrt` module acting out `state.scenario` and recording into `state`."""
    from fake_tensorrt_classes import behaviours

    api = snapshot()
    trt = types.ModuleType("tensorrt")
    trt.__version__ = state.scenario.version
    trt._classes = {}
    trt._state = state
    for qualname, spec in api["classes"].items():
        if "enum" in spec:
            trt._classes[qualname] = _make_enum(qualname, spec["enum"])
    made = behaviours(trt, state)
    for qualname, spec in api["classes"].items():
        if "enum" in spec:
            continue
        cls = made.get(qualname) or type(qualname, (_Base,), {"__init__": _unmodelled})
        trt._classes[qualname] = conform(trt, cls, spec, qualname)
    for qualname, cls in trt._classes.items():
        if "." in qualname:
            outer, inner = qualname.split(".")
            setattr(trt._classes[outer], inner, cls)
        else:
            setattr(trt, qualname, cls)
    for qualname, spec in api["classes"].items():
        for attr, enum_name in spec.get("exported", {}).items():
            setattr(trt._classes[qualname], attr, getattr(trt._classes[enum_name], attr))
    return trt


# ---------------------------------------------------------------------------------------------
# The CPU stand-in for a CUDA device


class FakeStream:
    """A stream of the stand-in device: `cuda_stream` is its handle (0: the legacy default stream)."""

    def __init__(self, state: FakeState, handle: int) -> None:
        self.state, self.cuda_stream = state, handle

    def wait_stream(self, other: FakeStream) -> None:
        self.state.events.append(("wait", self.cuda_stream, other.cuda_stream))

    def synchronize(self) -> None:
        self.state.events.append(("sync", self.cuda_stream))

    def __repr__(self) -> str:
        return f"<FakeStream {self.cuda_stream}>"


class FakeGraph:
    """Launches captured on a stream, replayed in order."""

    def __init__(self, state: FakeState) -> None:
        self.state, self.launches = state, []

    def replay(self) -> None:
        self.state.events.append(("replay", id(self)))
        for launch in self.launches:
            launch()


class CpuDevice(CudaDevice):
    """A CudaDevice on the CPU: tensors live in host memory (the fake engine reads and writes them
    through their addresses), streams and graphs are fakes recording into `state.events`."""

    def __init__(self, state: FakeState, index: int = 0) -> None:  # no super().__init__: no CUDA here
        self.state, self.index = state, index
        self.torch_device = torch.device("cpu")
        self._handles = iter(range(1, 1_000_000))
        self._current = FakeStream(state, 0)

    def __str__(self) -> str:
        return f"cuda:{self.index} (CPU stand-in)"

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        self.state.events.append(("guard", self.index))
        try:
            yield
        finally:
            self.state.events.append(("unguard", self.index))

    def new_stream(self) -> FakeStream:
        return FakeStream(self.state, next(self._handles))

    def current_stream(self) -> FakeStream:
        return self._current

    @contextlib.contextmanager
    def use(self, stream: FakeStream) -> Iterator[None]:
        before, self._current = self._current, stream
        try:
            yield
        finally:
            self._current = before

    def keep_alive(self, tensor: Any, stream: FakeStream) -> None:
        self.state.events.append(("keep", stream.cuda_stream, tensor.data_ptr()))

    def empty(self, shape: Any, dtype: Any) -> Any:
        """Host memory at a 256-byte aligned address, as CUDA's caching allocator gives."""
        numel = math.prod(shape)
        nbytes = numel * torch.empty((), dtype=dtype).element_size()
        raw = torch.empty(nbytes + 256, dtype=torch.uint8)
        start = (-raw.data_ptr()) % 256
        return raw[start : start + nbytes].view(dtype).view(tuple(shape))

    def new_graph(self) -> FakeGraph:
        return FakeGraph(self.state)

    @contextlib.contextmanager
    def capture(self, graph: FakeGraph, stream: FakeStream) -> Iterator[None]:
        self.state.events.append(("capture", stream.cuda_stream))
        self.state.capturing = (graph, stream.cuda_stream)
        try:
            with self.use(stream):
                yield
        finally:
            self.state.capturing = None

    def synchronize(self) -> None:
        self.state.events.append(("sync-device",))

    def properties(self) -> dict[str, Any]:
        return {
            "cuda": "13.0",
            "gpu": f"CPU stand-in for an {self.state.scenario.gpu}",
            "compute_capability": "9.0",
        }


def host_view(address: int, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """The host memory at `address` as an array (the fake engine's device memory is host memory)."""
    count = math.prod(shape)
    buffer = (ctypes.c_byte * (count * np.dtype(dtype).itemsize)).from_address(address)
    return np.frombuffer(buffer, dtype=dtype).reshape(shape)


def fake_logits(inputs: dict[str, np.ndarray], classes: int) -> np.ndarray:
    """What the fake engine computes: logits[n, k] = (k + 1) * sum over inputs of mean(input[n])."""
    total = sum(a.reshape(a.shape[0], -1).astype(np.float64).mean(axis=1) for a in inputs.values())
    return (total[:, None] * np.arange(1, classes + 1)[None, :]).astype(np.float32)


def plan_json(plan: bytes) -> dict[str, Any]:
    return json.loads(bytes(plan).decode())
