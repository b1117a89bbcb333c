"""The behaviour of the fake TensorRT classes (tests/fake_tensorrt.py): what each modelled method does.
Signatures are not written here: make_fake_tensorrt wraps every method with the real bindings' ones."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from fake_tensorrt import DEFAULT_STREAM_WARNING, NULLPTR, FakeState, _Base, fake_logits, host_view

ONNX_TYPES = {1: "FLOAT", 10: "HALF", 6: "INT32", 7: "INT64", 3: "INT8", 9: "BOOL"}
NUMPY = {
    "FLOAT": np.float32,
    "HALF": np.float16,
    "INT32": np.int32,
    "INT64": np.int64,
    "INT8": np.int8,
    "BOOL": np.bool_,
}


def behaviours(trt: Any, state: FakeState) -> dict[str, type]:
    """{class name: behaviour class} for the classes dctq's TensorRT code touches."""
    scenario = state.scenario

    def sev(name: str) -> Any:
        return getattr(trt._classes["ILogger.Severity"], name)

    def take_logger(logger: Any, who: str) -> None:
        state.calls.append((f"{who}.logger", logger))
        if logger not in state.loggers:
            state.loggers.append(logger)
        if state.loggers[0] is not logger:
            log(
                "WARNING",
                f"Logger passed to {who} differs from one already registered; the new logger is ignored",
            )

    def log(severity: str, msg: str) -> None:
        if state.loggers:
            state.loggers[0].log(sev(severity), msg)

    def dtype(name: str) -> Any:
        return getattr(trt.DataType, name)

    class ILogger(_Base):
        def __init__(self) -> None:
            pass

        def log(self, severity: Any, msg: str) -> None:
            raise RuntimeError("Tried to call pure virtual function ILogger::log")

    class Dims(_Base):
        def __init__(self, shape: Any = ()) -> None:
            self._d = tuple(int(v) for v in shape)

        def __len__(self) -> int:
            return len(self._d)

        def __getitem__(self, index: Any) -> Any:
            return self._d[index]

        def __str__(self) -> str:
            return str(self._d)

    def dims(value: Any) -> tuple[int, ...]:
        return tuple(int(v) for v in (value._d if isinstance(value, Dims) else value))

    class IHostMemory(bytes, _Base):  # bytes: the real one has the buffer protocol
        @property
        def nbytes(self) -> int:
            return len(self)

    class ParserError(_Base):
        def __init__(self, node: str, message: str, *, _fake: bool = True) -> None:
            self._node, self._message = node, message

        def desc(self) -> str:
            return self._message

        def node_name(self) -> str:
            return self._node

        def __str__(self) -> str:
            return f"In node 0 with name: {self._node} and operator: Conv (parseGraph): {self._message}"

    class INetworkDefinition(_Base):
        def __init__(self, flags: int, *, _fake: bool = True) -> None:
            self._flags, self._inputs, self._outputs, self._weights = flags, {}, {}, 0

        @property
        def num_inputs(self) -> int:
            return len(self._inputs)

    class OnnxParser(_Base):
        def __init__(self, network: INetworkDefinition, logger: Any) -> None:
            take_logger(logger, "OnnxParser")
            self._network, self._errors = network, []

        def parse(self, model: Any, path: str | None = None) -> bool:
            import onnx

            if not scenario.parse_ok:
                self._errors.append(
                    ParserError("/conv1/Conv", "fake: this Conv's weights are not a constant")
                )
                log("ERROR", "ModelImporter.cpp: failed to parse the graph")
                return False
            proto = onnx.load_from_string(bytes(memoryview(model)))
            inits = {i.name for i in proto.graph.initializer}
            for target, values in (
                (self._network._inputs, proto.graph.input),
                (self._network._outputs, proto.graph.output),
            ):
                for vi in values:
                    if vi.name in inits:
                        continue
                    t = vi.type.tensor_type
                    target[vi.name] = (
                        ONNX_TYPES[t.elem_type],
                        tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim),
                    )
            self._network._weights = sum(len(i.raw_data) for i in proto.graph.initializer)
            return True

        @property
        def num_errors(self) -> int:
            return len(self._errors)

        def get_error(self, index: int) -> ParserError:
            return self._errors[index]

    class ITimingCache(_Base):
        def __init__(self, gpu: str, entries: int, *, _fake: bool = True) -> None:
            self._gpu, self._entries = gpu, entries

        def serialize(self) -> IHostMemory:
            return IHostMemory(json.dumps({"gpu": self._gpu, "entries": self._entries}).encode())

    class IOptimizationProfile(_Base):
        def __init__(self, *, _fake: bool = True) -> None:
            self._shapes = {}

        def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:  # TensorRT's parameter names
            self._shapes[input] = (dims(min), dims(opt), dims(max))

    class IBuilderConfig(_Base):
        def __init__(self, *, _fake: bool = True) -> None:
            self._profiles, self._pools, self._cache, self._level = [], {}, None, 3

        def set_memory_pool_limit(self, pool: Any, pool_size: int) -> None:
            self._pools[pool] = int(pool_size)

        def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
            self._profiles.append(profile)
            return len(self._profiles) - 1

        @property
        def builder_optimization_level(self) -> int:
            return self._level

        @builder_optimization_level.setter
        def builder_optimization_level(self, value: int) -> None:
            self._level = int(value)

        def create_timing_cache(self, serialized_timing_cache: Any) -> ITimingCache | None:
            data = bytes(memoryview(serialized_timing_cache))
            if not data:
                return ITimingCache(scenario.gpu, 0)
            try:
                found = json.loads(data)
            except ValueError:
                log("ERROR", "fake: the timing cache blob is corrupt")
                return None
            return ITimingCache(found["gpu"], found["entries"])

        def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
            state.calls.append(("set_timing_cache", (cache._gpu, ignore_mismatch)))
            if cache._gpu != scenario.gpu and not ignore_mismatch:
                log("ERROR", f"fake: timing cache from a {cache._gpu} does not match this {scenario.gpu}")
                return False
            self._cache = cache
            return True

        def get_timing_cache(self) -> ITimingCache | None:
            return self._cache

    class Builder(_Base):
        def __init__(self, logger: Any) -> None:
            if scenario.builder_fails:
                raise TypeError(NULLPTR)
            take_logger(logger, "Builder")

        def create_network(self, flags: int = 0) -> INetworkDefinition:
            state.calls.append(("create_network", int(flags)))
            return INetworkDefinition(int(flags))

        def create_builder_config(self) -> IBuilderConfig:
            return IBuilderConfig()

        def create_optimization_profile(self) -> IOptimizationProfile:
            return IOptimizationProfile()

        def build_serialized_network(
            self, network: INetworkDefinition, config: IBuilderConfig
        ) -> IHostMemory | None:
            log("VERBOSE", "fake: building")
            if not scenario.build_ok or len(config._profiles) != 1:
                log("ERROR", "fake: no implementation obeys the requested constraints")
                return None
            shapes = config._profiles[0]._shapes
            if set(shapes) != set(network._inputs):
                log(
                    "ERROR",
                    f"fake: the profile covers {sorted(shapes)}, the network's inputs are {sorted(network._inputs)}",
                )
                return None
            for name, (_, onnx_dims) in network._inputs.items():
                for shape in shapes[name]:
                    fixed = [d for d, o in zip(shape, onnx_dims, strict=True) if o != -1 and o != d]
                    if fixed:
                        log("ERROR", f"fake: profile {shapes[name]} does not fit input {name} {onnx_dims}")
                        return None
            if config._cache is not None:
                config._cache._entries += 1
            state.calls.append(
                ("build", {"pools": dict(config._pools), "level": config._level, "shapes": shapes})
            )
            plan = {
                "inputs": network._inputs,
                "outputs": network._outputs,
                "shapes": shapes,
                "weights": network._weights,
            }
            return IHostMemory(b"FAKEPLAN" + json.dumps(plan).encode())

    class Runtime(_Base):
        def __init__(self, logger: Any) -> None:
            if scenario.builder_fails:
                raise TypeError(NULLPTR)
            take_logger(logger, "Runtime")

        def deserialize_cuda_engine(self, serialized_engine: Any) -> ICudaEngine | None:
            data = bytes(memoryview(serialized_engine))
            log("VERBOSE", f"fake: deserializing an engine of {len(data)} bytes")
            if not data.startswith(b"FAKEPLAN"):
                log("ERROR", "fake: the plan is not a serialized engine")
                return None
            return ICudaEngine(json.loads(data[8:]))

    class ICudaEngine(_Base):
        def __init__(self, plan: dict[str, Any], *, _fake: bool = True) -> None:
            self._plan = plan
            self._names = list(plan["inputs"]) + list(plan["outputs"])

        @property
        def num_io_tensors(self) -> int:
            return len(self._names)

        def get_tensor_name(self, index: int) -> str:
            return self._names[index]

        def get_tensor_mode(self, name: str) -> Any:
            return trt.TensorIOMode.INPUT if name in self._plan["inputs"] else trt.TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name: str) -> Any:
            return dtype({**self._plan["inputs"], **self._plan["outputs"]}[name][0])

        def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[Dims]:
            return [Dims(s) for s in self._plan["shapes"][name]]

        def create_execution_context(self, strategy: Any = None) -> IExecutionContext:
            return IExecutionContext(self)

        @property
        def device_memory_size_v2(self) -> int:
            return 3 << 20

        def get_engine_stat(self, stat: Any = None) -> int:
            return self._plan["weights"] if stat in (None, trt.EngineStat.TOTAL_WEIGHTS_SIZE) else -1

    class IExecutionContext(_Base):
        def __init__(self, engine: ICudaEngine, *, _fake: bool = True) -> None:
            self._engine, self._shapes, self._addresses, self._generation = engine, {}, {}, 0

        def set_input_shape(self, name: str, shape: Any) -> bool:
            shape = dims(shape)
            lo, _, hi = self._engine._plan["shapes"][name]
            if (
                scenario.refuse_shapes
                or len(shape) != len(lo)
                or not all(a <= s <= b for a, s, b in zip(lo, shape, hi, strict=True))
            ):
                log("ERROR", f"fake: shape {shape} of {name} is outside the profile [{lo}, {hi}]")
                return False
            if self._shapes.get(name, shape) != shape:
                self._generation += 1  # TensorRT recomputes its internal state for the new shapes
            self._shapes[name] = shape
            return True

        def get_tensor_shape(self, name: str) -> Dims:
            if name in self._engine._plan["inputs"]:
                return Dims(self._shapes.get(name, self._engine._plan["inputs"][name][1]))
            batch = {s[0] for s in self._shapes.values()}
            if len(self._shapes) < len(self._engine._plan["inputs"]) or len(batch) != 1:
                return Dims((-1, scenario.classes))
            return Dims((batch.pop(), scenario.classes))

        def set_tensor_address(self, name: str, memory: int) -> bool:
            if name not in self._engine._names or int(memory) % 256:
                log("ERROR", f"fake: address {int(memory):#x} of {name} is not 256-byte aligned")
                return False
            self._addresses[name] = int(memory)
            return True

        def execute_async_v3(self, stream_handle: int) -> bool:
            handle = int(stream_handle)
            if handle == 0:
                log("WARNING", DEFAULT_STREAM_WARNING)
            missing = [n for n in self._engine._names if n not in self._addresses]
            if missing or len(self._shapes) < len(self._engine._plan["inputs"]):
                log("ERROR", f"fake: enqueue without addresses or shapes for {missing or 'some inputs'}")
                return False
            launch = self._launch(dict(self._addresses), dict(self._shapes), self._generation)
            state.events.append(("enqueue", handle, id(self)))
            if state.capturing is not None:
                graph, capturing = state.capturing
                if handle != capturing:
                    log("ERROR", "fake: launch on another stream while a stream is capturing")
                    return False
                graph.launches.append(launch)
            else:
                launch()
            return True

        def _launch(
            self, addresses: dict[str, int], shapes: dict[str, tuple[int, ...]], generation: int
        ) -> Any:
            plan = self._engine._plan

            def run() -> None:
                if self._generation != generation:
                    raise AssertionError(
                        "fake: a CUDA graph replayed after its execution context's shapes changed "
                        "(TensorRT would replay stale state); capture graphs on a context of their own"
                    )
                inputs = {
                    n: host_view(addresses[n], shapes[n], NUMPY[plan["inputs"][n][0]]) for n in plan["inputs"]
                }
                batch = next(iter(shapes.values()))[0]
                for name, (kind, _) in plan["outputs"].items():
                    out = host_view(addresses[name], (batch, scenario.classes), NUMPY[kind])
                    out[...] = fake_logits(inputs, scenario.classes)

            return run

    found = {
        cls.__name__: cls for cls in (ILogger, Dims, IHostMemory, ParserError, INetworkDefinition, OnnxParser)
    }
    found.update(
        {cls.__name__: cls for cls in (ITimingCache, IOptimizationProfile, IBuilderConfig, Builder, Runtime)}
    )
    found.update({cls.__name__: cls for cls in (ICudaEngine, IExecutionContext)})
    return found
