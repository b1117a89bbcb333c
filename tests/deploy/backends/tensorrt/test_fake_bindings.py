"""The TensorRT build and run path against the real TensorRT 11.4 Python API, on a CPU machine.

Two layers (tests/trt_api.py, tests/fake_tensorrt.py):
- the real bindings (the `tensorrt-cu13-bindings` wheel over stub libraries, in a subprocess): the
  committed signature snapshot must equal what the wheel declares, and dctq's logger, enum handling
  and builder/runtime creation run against the real classes (creation fails as with a too-old
  driver; dctq must say so). Skipped, with the reason, without the wheel or a C compiler;
- a fake `tensorrt` built from that snapshot, which refuses any call the real bindings would refuse,
  plus a CPU stand-in for the CUDA device: build_engine, TrtEngine, the CUDA-graph runner, the
  backend and `dctq export model.onnx --format tensorrt` run end to end, with the defects of issue 18
  each shown: the legacy default stream, the shared graph context, one logger per process, timing
  caches TensorRT refuses, binding results and alignment, engine memory, and TensorRT 10's flag.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import numpy as np
import pytest
import torch
from fake_tensorrt import CpuDevice, FakeState, Scenario, fake_logits, make_fake_tensorrt
from trt_api import bindings_env, build_stubs, live_api, snapshot
from typer.testing import CliRunner

import dctq.deploy.backends.tensorrt.device as device_module
from dctq.cli.main import app
from dctq.common.errors import BackendUnavailable, ExportError, ModelError
from dctq.deploy.artifact import load_artifact
from dctq.deploy.backends.tensorrt.build import BuildConfig, build_engine
from dctq.deploy.backends.tensorrt.engine import TrtEngine
from dctq.deploy.backends.tensorrt.runner import TrtRunner
from dctq.deploy.profiling.latency import native_memory_mb
from dctq.models import example_inputs

# ------------------------------------------------------------------ the real bindings


@pytest.fixture(scope="module")
def real_api(tmp_path_factory: pytest.TempPathFactory):
    api, why = live_api(tmp_path_factory.mktemp("trt_api"))
    if api is None:
        pytest.skip(why)
    return api


def test_the_fake_is_built_from_the_real_signatures(real_api) -> None:
    assert real_api == snapshot()  # else: python tests/trt_api.py --update, and check dctq's calls
    classes = real_api["classes"]
    assert classes["IExecutionContext"]["methods"]["execute_async_v3"] == [
        "(stream_handle: SupportsInt) -> bool"
    ]
    assert classes["IBuilderConfig"]["methods"]["set_timing_cache"] == [
        "(cache: ITimingCache, ignore_mismatch: bool) -> bool"
    ]
    assert not {"INT8", "FP16", "STRONGLY_TYPED"} & set(classes["BuilderFlag"]["enum"])  # gone in 11
    assert classes["NetworkDefinitionCreationFlag"]["enum"]["STRONGLY_TYPED"] == 0


REAL_BINDINGS_SCRIPT = r"""
import json, sys
import tensorrt_bindings as trt
sys.modules["tensorrt"] = trt
from dctq.common.errors import BackendUnavailable
from dctq.deploy.backends.tensorrt.build import network_flags
from dctq.deploy.backends.tensorrt.engine import torch_dtype
from dctq.deploy.backends.tensorrt.env import create_builder, create_runtime, logger_verbosity, trt_logger

out = {"same_logger": trt_logger(trt) is trt_logger(trt), "flags": network_flags(trt)}
with logger_verbosity(trt, True) as tlog:
    out["verbose_inside"] = tlog.verbose
out["verbose_after"] = trt_logger(trt).verbose
out["dtypes"] = [str(torch_dtype(trt, getattr(trt.DataType, n))) for n in ("HALF", "FLOAT", "INT8")]
for make in (create_builder, create_runtime):
    try:
        make(trt)
        out[make.__name__] = "created"
    except BackendUnavailable as exc:
        out[make.__name__] = str(exc)
print(json.dumps(out))
"""


def test_dctq_against_the_real_classes_and_a_builder_that_cannot_start(real_api, tmp_path) -> None:
    """The real ILogger takes dctq's subclass, the real enums map to torch dtypes, and the real
    factories' nullptr (what TensorRT does on a driver too old for its CUDA) becomes a message naming
    the driver and CUDA versions found and needed."""
    done = subprocess.run(
        [sys.executable, "-c", REAL_BINDINGS_SCRIPT],
        capture_output=True,
        text=True,
        env=bindings_env(build_stubs(tmp_path / "stubs")),
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["same_logger"] and out["flags"] == 0
    assert out["verbose_inside"] is True and out["verbose_after"] is False
    assert out["dtypes"] == ["torch.float16", "torch.float32", "torch.int8"]
    for what in ("create_builder", "create_runtime"):
        message = out[what]
        assert "factory function returned nullptr" in message, message
        assert "built for CUDA 13 and needs driver r580 or later" in message
        assert "found driver" in message and "tensorrt-cu12" in message


# ------------------------------------------------------------------ the fake


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch):
    """make(**Scenario fields) -> (state, fake tensorrt module, stand-in device); installs the fake as
    `tensorrt` and the stand-in as device.CudaDevice (for the runner and the CLI, which make their own)."""

    def make(**scenario):
        state = FakeState(Scenario(**scenario))
        trt = make_fake_tensorrt(state)

        class StandIn(CpuDevice):
            def __init__(self, index: int | None = None) -> None:
                super().__init__(state, 0 if index is None else index)

        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        monkeypatch.setattr(device_module, "CudaDevice", StandIn)
        return state, trt, StandIn()

    return make


def _feeds(qmodel, batch: int, seed: int) -> dict[str, torch.Tensor]:
    return dict(zip(("y", "cbcr", "qt"), example_inputs(qmodel, batch, seed=seed), strict=True))


def _expected(feeds: dict[str, torch.Tensor]) -> np.ndarray:
    """The fake engine's logits for `feeds` as the engine takes them (FP16 coefficients, FP32 tables)."""
    typed = {"y": feeds["y"].half(), "cbcr": feeds["cbcr"].half(), "qt": feeds["qt"].float()}
    return fake_logits({k: v.numpy() for k, v in typed.items()}, 10)


def _build(tiny_onnx, tmp_path, device, **config) -> dict:
    return build_engine(
        tiny_onnx[0], tmp_path / "m.engine", BuildConfig(batch=(1, 8, 16), **config), device=device
    )


def test_build_and_run_on_the_engines_own_stream(fake, tiny_onnx, tmp_path) -> None:
    state, trt, device = fake()
    sidecar = _build(tiny_onnx, tmp_path, device, optimization_level=4)
    assert sidecar["build"]["tensorrt"] == "11.4.0.106" and (tmp_path / "m.engine").is_file()
    assert state.called("create_network") == [0]  # TensorRT 11: strongly typed by default
    (build,) = state.called("build")
    assert build["pools"] == {trt.MemoryPoolType.WORKSPACE: 4096 << 20} and build["level"] == 4
    assert build["shapes"]["y"] == ((1, 64, 4, 4), (8, 64, 4, 4), (16, 64, 4, 4))

    engine = TrtEngine(tmp_path / "m.engine", device=device)
    assert engine.input_names == ["y", "cbcr", "qt"] and engine.output_names == ["logits"]
    assert engine.dtypes["y"] == torch.float16 and engine.dtypes["qt"] == torch.float32
    feeds = _feeds(tiny_onnx[1], 8, seed=1)
    state.events.clear()
    (logits,) = engine(feeds["y"], feeds["cbcr"], feeds["qt"])
    np.testing.assert_allclose(logits.numpy(), _expected(feeds), rtol=1e-5)

    own = engine.stream.cuda_stream
    ev = state.events
    (enqueue,) = [i for i, e in enumerate(ev) if e[0] == "enqueue"]
    assert own != 0 and ev[enqueue][1] == own  # never the legacy default stream (handle 0)
    assert ev.index(("wait", own, 0)) < enqueue < ev.index(("wait", 0, own))  # ordered both ways
    assert ev.index(("guard", 0)) < enqueue < ev.index(("unguard", 0))  # under the engine's device
    assert ("keep", 0, logits.data_ptr()) in ev  # the caller's stream uses the outputs


def test_bindings_are_checked_and_aligned(fake, tiny_onnx, tmp_path, caplog) -> None:
    state, _, device = fake()
    _build(tiny_onnx, tmp_path, device)
    engine = TrtEngine(tmp_path / "m.engine", device=device)
    feeds = _feeds(tiny_onnx[1], 4, seed=2)
    # an FP16 view two bytes into its storage: TensorRT would refuse its address
    storage = torch.zeros(feeds["y"].numel() + 1, dtype=torch.float16)
    view = storage[1:].view(feeds["y"].shape)
    view.copy_(feeds["y"])
    assert view.data_ptr() % 256
    with caplog.at_level(logging.WARNING):
        (logits,) = engine(view, feeds["cbcr"], feeds["qt"])
    np.testing.assert_allclose(logits.numpy(), _expected(feeds), rtol=1e-5)
    assert not [r for r in caplog.records if "aligned" in r.getMessage()]
    with pytest.raises(ModelError, match="accepts"):
        engine(*_feeds(tiny_onnx[1], 32, seed=3).values())  # beyond the profile's batch 16

    state.scenario.refuse_shapes = True
    with pytest.raises(ModelError, match=r"TensorRT refused shape \[4, 64, 4, 4\] for input 'y'"):
        engine(*feeds.values())


def test_cuda_graph_has_its_own_context_and_returns_new_tensors(fake, tiny_onnx, tmp_path) -> None:
    state, _, device = fake()
    _build(tiny_onnx, tmp_path, device)
    engine = TrtEngine(tmp_path / "m.engine", device=device)
    first, other, small = (_feeds(tiny_onnx[1], n, seed=s) for n, s in ((8, 4), (8, 5), (3, 6)))
    state.events.clear()
    graph = engine.capture_cuda_graph(first)
    ev = state.events
    graph_stream = graph.stream.cuda_stream
    first_enqueue = next(i for i, e in enumerate(ev) if e[0] == "enqueue")
    assert ev.index(("wait", graph_stream, 0)) < first_enqueue  # the copies wait for the caller's stream
    assert ("capture", graph_stream) in ev and graph.context is not engine.context

    a = graph(first)["logits"]
    np.testing.assert_allclose(a.numpy(), _expected(first), rtol=1e-5)
    engine.run(small)  # a smaller last batch on the ordinary path changes that context's shapes only
    b = graph(other)["logits"]
    np.testing.assert_allclose(b.numpy(), _expected(other), rtol=1e-5)
    np.testing.assert_allclose(a.numpy(), _expected(first), rtol=1e-5)  # not the static buffer
    assert a.data_ptr() != graph.outputs["logits"].data_ptr()
    replay = ev.index(("replay", id(graph.graph)))
    assert (
        ev.index(("wait", graph_stream, 0), replay - 3) < replay < ev.index(("wait", 0, graph_stream), replay)
    )


def test_runner_graph_path_memory_and_profile_column(fake, tiny_onnx, tmp_path) -> None:
    state, _, device = fake()
    _build(tiny_onnx, tmp_path, device)
    runner = TrtRunner(load_artifact(tmp_path / "m.engine", trust_code=True), cuda_graph=True)
    weights = runner.engine.engine.get_engine_stat()
    assert weights > 0 and runner.native_memory_mb() == pytest.approx((weights + (3 << 20)) / 2**20)
    for batch, seed in ((8, 7), (3, 8), (8, 9)):  # the graph's shape, a smaller last batch, the graph again
        feeds = _feeds(tiny_onnx[1], batch, seed)
        np.testing.assert_allclose(runner.predict(feeds).numpy(), _expected(feeds), rtol=1e-5)
    assert runner.engine.contexts == 2
    runner.synchronize()  # through the engine's device
    assert state.events[-1] == ("sync-device",)
    assert native_memory_mb(runner) == pytest.approx((weights + 2 * (3 << 20)) / 2**20)


def test_one_logger_for_every_builder_and_engine(fake, tiny_onnx, tmp_path, caplog) -> None:
    """TensorRT keeps the first logger it is given; dctq hands it the same one every time, so the
    second engine's verbosity is honoured and no logger is ignored."""
    state, _, device = fake()
    _build(tiny_onnx, tmp_path, device)
    with caplog.at_level(logging.DEBUG, logger="dctq.deploy.backends.tensorrt.env"):
        TrtEngine(tmp_path / "m.engine", device=device)
        TrtEngine(tmp_path / "m.engine", device=device, verbose=True)
    assert len(state.loggers) == 1 and len(state.called("Runtime.logger")) == 2
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "ignored" in m]
    assert sum("deserializing an engine" in m for m in messages) == 1  # the verbose engine's only


def test_a_refused_timing_cache_is_replaced(fake, tiny_onnx, tmp_path, caplog) -> None:
    state, _, device = fake()
    cache = tmp_path / "timing.cache"
    cache.write_text(json.dumps({"gpu": "A100", "entries": 7}))  # written on another GPU
    with caplog.at_level(logging.WARNING):
        _build(tiny_onnx, tmp_path, device, timing_cache=cache)
    assert state.called("set_timing_cache") == [("A100", False), ("H100", False)]
    assert any("does not fit this GPU" in r.getMessage() for r in caplog.records)
    assert json.loads(cache.read_text()) == {"gpu": "H100", "entries": 1}
    caplog.clear()
    _build(tiny_onnx, tmp_path, device, timing_cache=cache)  # now it fits, and grows
    assert json.loads(cache.read_text()) == {"gpu": "H100", "entries": 2} and not caplog.records


@pytest.mark.parametrize(
    ("scenario", "error", "message"),
    [
        ({"parse_ok": False}, ExportError, r"parser refused the graph: In node 0 with name: /conv1/Conv"),
        ({"build_ok": False}, ExportError, "could not build an engine"),
        ({"builder_fails": True}, BackendUnavailable, "could not create its builder .*nullptr.*found driver"),
    ],
)
def test_failures_name_their_cause_and_write_nothing(
    fake, tiny_onnx, tmp_path, scenario, error, message
) -> None:
    _, _, device = fake(**scenario)
    with pytest.raises(error, match=message):
        _build(tiny_onnx, tmp_path, device, timing_cache=tmp_path / "timing.cache")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_tensorrt_10_asks_for_a_strongly_typed_network(fake, tiny_onnx, tmp_path) -> None:
    state, _, device = fake(version="10.13.3.9")
    assert _build(tiny_onnx, tmp_path, device)["build"]["tensorrt"] == "10.13.3.9"
    assert state.called("create_network") == [1 << 0]  # 1 << STRONGLY_TYPED


def test_export_builds_an_engine_from_an_onnx_file(fake, tiny_onnx, tmp_path) -> None:
    fake()
    engine = tmp_path / "tiny.engine"
    args = ["export", str(tiny_onnx[0]), "--format", "tensorrt", "--out", str(engine), "--max-batch", "16"]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["format"] == "tensorrt" and data["quantized"] is True and data["artifact"] == str(engine)
    built = json.loads((tmp_path / "tiny.engine.json").read_text())["build"]
    assert built["inputs"][0]["profile"]["max"] == [16, 64, 4, 4] and built["onnx"] == "tiny.onnx"
    refused = CliRunner().invoke(app, ["export", str(tiny_onnx[0]), "--format", "torchscript"])
    assert refused.exit_code == 1 and "exports to --format tensorrt only" in refused.output
