"""The TensorRT path. Without TensorRT (this machine) the plain-Python parts run: input roles and
optimization profiles, the build plan (FP16 pass + artifact sidecar), the engine sidecar and its
version check, the backend's registration and its BackendUnavailable messages. Tests marked `trt`
build and run a real engine; they skip with the install command where `import tensorrt` fails."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from dctq.common.errors import BackendUnavailable, ExportError
from dctq.deploy.artifact import TensorSpec, load_artifact, read_sidecar
from dctq.deploy.backends.tensorrt.build import (
    BuildConfig,
    engine_sidecar,
    onnx_input_specs,
    plan_build,
    profile_shapes,
    recipe_sha256,
    size_range,
)
from dctq.deploy.backends.tensorrt.engine import check_environment, read_engine_sidecar
from dctq.deploy.backends.tensorrt.env import import_tensorrt
from dctq.models import example_inputs

ENV = {
    "tensorrt": "11.4.0",
    "cuda": "12.8",
    "driver": "580.1",
    "gpu": "NVIDIA H100",
    "compute_capability": "9.0",
}


def test_input_roles_and_profile_shapes(tiny_onnx) -> None:
    import onnx

    specs = onnx_input_specs(onnx.load(str(tiny_onnx[0])))
    assert [(s.name, s.role) for s in specs] == [("y", "luma"), ("cbcr", "chroma"), ("qt", "qt")]
    assert specs[0].dims == (None, 64, 4, 4)  # dynamic batch, fixed 32 px grid
    shapes = profile_shapes(specs, (1, 8, 64), 32)
    assert shapes["y"] == ((1, 64, 4, 4), (8, 64, 4, 4), (64, 64, 4, 4))
    assert shapes["cbcr"] == ((1, 128, 2, 2), (8, 128, 2, 2), (64, 128, 2, 2))
    assert shapes["qt"] == ((1, 3, 64), (8, 3, 64), (64, 3, 64))
    with pytest.raises(ExportError, match="fixed to"):
        profile_shapes(specs, (1, 8, 64), (32, 32, 64))  # the export fixes the grid at 32 px
    with pytest.raises(ExportError, match="batch"):
        profile_shapes(specs, (8, 1, 64), 32)


def test_dynamic_grids_follow_pixel_sizes() -> None:
    specs = [
        TensorSpec("y", ("batch", 64, "h", "w"), "float16"),
        TensorSpec("cbcr", ("batch", 128, "h2", "w2"), "float16"),
        TensorSpec("x", ("batch", 3, "height", "width"), "float32"),
    ]
    assert [s.role for s in specs] == ["luma", "chroma", "rgb"] and specs[0].dims == (None, 64, None, None)
    shapes = profile_shapes(specs, (1, 32, 256), ((200, 300), (224, 320), (500, 520)))
    # 200 px -> 13 MCUs -> 26 blocks; 300 -> 19 -> 38; 320 -> 20 -> 40; 520 -> 33 -> 66
    assert shapes["y"] == ((1, 64, 26, 38), (32, 64, 28, 40), (256, 64, 64, 66))
    assert shapes["cbcr"][2] == (256, 128, 32, 33)
    assert shapes["x"][0] == (1, 3, 200, 300)
    with pytest.raises(ExportError, match="min <= opt <= max"):
        size_range((512, 224, 600))


def test_build_plan_and_engine_sidecar(tiny_onnx, tmp_path) -> None:
    path, _ = tiny_onnx
    plan = plan_build(path, BuildConfig(batch=(1, 16, 64)))
    assert plan.image_size == ((32, 32),) * 3
    assert plan.fp16_report["scales"] == "fp16" and plan.fp16_report["weights_folded"] > 0
    assert {t.name: t.dtype for t in plan.meta.inputs} == {"y": "float16", "cbcr": "float16", "qt": "float32"}
    assert plan.onnx_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    recipe = plan.meta.recipe
    assert recipe["type"] == "QuantRecipe" and recipe["calibrator"] == "max"

    engine_bytes = b"not really a plan"
    sidecar = engine_sidecar(plan, BuildConfig(batch=(1, 16, 64)), ENV, engine_bytes, 1.5)
    canonical = json.dumps(recipe, sort_keys=True, separators=(",", ":")).encode()
    assert sidecar["build"]["recipe_sha256"] == hashlib.sha256(canonical).hexdigest() == recipe_sha256(recipe)
    assert sidecar["build"]["engine_sha256"] == hashlib.sha256(engine_bytes).hexdigest()
    assert sidecar["build"]["inputs"][0]["profile"]["max"] == [64, 64, 4, 4]
    assert sidecar["build"]["compute_capability"] == "9.0"
    # the sidecar is an artifact sidecar: the rest of dctq reads the engine like any artifact
    engine = tmp_path / "model.engine"
    engine.write_bytes(engine_bytes)
    (tmp_path / "model.engine.json").write_text(json.dumps(sidecar))
    artifact = load_artifact(engine, trust_code=True)
    assert artifact.kind == "engine" and artifact.meta.input_kind == "dct" and artifact.meta.input_size == 32
    assert read_engine_sidecar(engine)["build"]["tensorrt"] == "11.4.0"


def test_one_sidecar_reader_for_artifacts_and_engines(tmp_path) -> None:
    engine, sidecar = tmp_path / "m.engine", tmp_path / "m.engine.json"
    assert read_sidecar(engine) is None and read_engine_sidecar(engine) is None
    for text, message in [
        ("{", "not readable JSON"),
        ('{"format": "other"}', "not a dctq sidecar"),
        ('{"format": "dctq.artifact", "kind": "onnx"}', "describes a 'onnx' artifact, not 'engine'"),
        ('{"format": "dctq.artifact", "kind": "engine"}', "no 'build' section"),
    ]:
        sidecar.write_text(text)
        with pytest.raises(ExportError, match=message):
            read_engine_sidecar(engine)
    assert read_sidecar(engine)["kind"] == "engine"


def test_version_check() -> None:
    sidecar = {"build": dict(ENV)}
    assert check_environment(sidecar, ENV) == []
    warnings = check_environment(sidecar, {**ENV, "gpu": "NVIDIA H200", "driver": "590.2"})
    assert len(warnings) == 2 and "H100" in warnings[0] + warnings[1]
    rebuild = r"rebuild it here: `dctq export model\.onnx --format tensorrt`"  # a command that exists
    with pytest.raises(ExportError, match=rf"tensorrt '11\.4\.0' at build time, '11\.5\.0' here.*{rebuild}"):
        check_environment(sidecar, {**ENV, "tensorrt": "11.5.0"})
    with pytest.raises(ExportError, match="compute_capability"):
        check_environment(sidecar, {**ENV, "compute_capability": "8.9"})


def test_backend_is_registered_and_says_how_to_install(tiny_onnx, tmp_path) -> None:
    import dctq.deploy.backends.tensorrt.runner  # noqa: F401  (registration)
    from dctq.deploy.backends.registry import get_backend

    backend = get_backend("tensorrt")
    assert backend.accepts == ("engine",)
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"x")
    plan = plan_build(tiny_onnx[0], BuildConfig())
    (tmp_path / "m.engine.json").write_text(json.dumps(engine_sidecar(plan, BuildConfig(), ENV, b"x", 0.0)))
    with pytest.raises(BackendUnavailable, match="GPUs only"):
        backend.load(load_artifact(engine, trust_code=True), device="cpu")
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(BackendUnavailable, match=r"pip install 'dctq\[tensorrt\]'"):
            backend.load(load_artifact(engine, trust_code=True))


# ------------------------------------------------------------------ with TensorRT and a GPU


@pytest.fixture
def trt():
    try:
        tensorrt = import_tensorrt()
    except BackendUnavailable as exc:
        pytest.skip(str(exc))
    if not torch.cuda.is_available():
        pytest.skip("TensorRT tests need a CUDA GPU")
    return tensorrt


@pytest.mark.trt
def test_engine_matches_onnx_runtime(trt, tiny_onnx, tmp_path) -> None:
    import onnx
    import onnxruntime as ort

    from dctq.deploy.backends.tensorrt.build import build_engine
    from dctq.deploy.backends.tensorrt.engine import TrtEngine
    from dctq.deploy.onnx.fp16 import to_fp16

    path, qmodel = tiny_onnx
    cache = tmp_path / "timing.cache"
    sidecar = build_engine(path, tmp_path / "m.engine", BuildConfig(batch=(1, 8, 32), timing_cache=cache))
    assert cache.is_file() and sidecar["build"]["tensorrt"] == trt.__version__
    engine = TrtEngine(tmp_path / "m.engine")
    assert engine.input_names == ["y", "cbcr", "qt"]
    assert engine.dtypes["y"] == torch.float16 and engine.dtypes["qt"] == torch.float32
    y, cbcr, qt = example_inputs(qmodel, 8, seed=3)
    (got,) = engine(y.cuda(), cbcr.cuda(), qt.cuda())
    torch.cuda.synchronize()
    fp16_graph, _ = to_fp16(onnx.load(str(path)), fp16_inputs=["y", "cbcr"])
    session = ort.InferenceSession(fp16_graph.SerializeToString(), providers=["CPUExecutionProvider"])
    ref = session.run(None, {"y": y.half().numpy(), "cbcr": cbcr.half().numpy(), "qt": qt.numpy()})[0]
    got = got.float().cpu().numpy()
    err = ((ref - got) ** 2).sum() / (ref**2).sum()
    assert 10 * np.log10(1 / max(err, 1e-30)) > 30  # same function up to FP16/INT8 rounding
    graph = engine.capture_cuda_graph({"y": y, "cbcr": cbcr, "qt": qt})
    replayed = graph({"y": y.cuda(), "cbcr": cbcr.cuda(), "qt": qt.cuda()})["logits"]
    torch.cuda.synchronize()
    np.testing.assert_allclose(replayed.float().cpu().numpy(), got, rtol=0, atol=1e-3)
    with pytest.raises(Exception, match="accepts"):
        engine(*(t[:1].repeat(64, *[1] * (t.dim() - 1)).cuda() for t in (y, cbcr, qt)))


@pytest.mark.trt
def test_engine_refuses_a_foreign_sidecar(trt, tiny_onnx, tmp_path) -> None:
    from dctq.deploy.backends.tensorrt.build import build_engine
    from dctq.deploy.backends.tensorrt.engine import TrtEngine

    build_engine(tiny_onnx[0], tmp_path / "m.engine", BuildConfig(batch=(1, 2, 4)))
    side = tmp_path / "m.engine.json"
    data = json.loads(side.read_text())
    data["build"]["tensorrt"] = "9.0.0"
    side.write_text(json.dumps(data))
    with pytest.raises(ExportError, match="rebuild"):
        TrtEngine(tmp_path / "m.engine")


def test_the_tensorrt_extra_installs_what_the_build_imports() -> None:
    """The build reads the ONNX graph (onnx) and export_engine exports with the dynamo exporter
    (onnxscript): `pip install 'dctq[tensorrt]'` alone must bring both."""
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib", reason="tomllib is Python 3.11+")
    pyproject = tomllib.loads((Path(__file__).resolve().parents[4] / "pyproject.toml").read_text())
    extra = pyproject["project"]["optional-dependencies"]["tensorrt"]
    names = {req.split(">")[0].split("=")[0].split("<")[0].strip() for req in extra}
    assert {"tensorrt", "onnx", "onnxscript"} <= names
