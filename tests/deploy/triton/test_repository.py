"""`dctq export --format triton` on the demo's INT8 model: config.pbtxt read back through Triton's schema
(protobuf text format), the Python-backend models' `execute` run with Triton's request/response classes
stubbed by their documented interface, and the ensemble's three steps chained here (JPEG bytes ->
dctq's reader -> the repository's model.onnx in ONNX Runtime -> labels) against `dctq predict`."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from typer.testing import CliRunner

from dctq.cli.main import app
from dctq.common.errors import ExportError
from dctq.deploy.artifact import artifact_binding, load_artifact, sidecar_path
from dctq.deploy.export.formats import export_artifact
from dctq.deploy.predict import predict
from dctq.deploy.triton.check import check_repository, read_configs
from dctq.deploy.triton.model_config import config_json, parse_config, render_pbtxt
from dctq.deploy.triton.repository import export_triton
from dctq.models.checkpoint import load_checkpoint

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("google.protobuf")


# ------------------------------------------------- triton_python_backend_utils, as documented


class TritonError:
    def __init__(self, message: str) -> None:
        self._message = message

    def message(self) -> str:
        return self._message


class Tensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        if not isinstance(array, np.ndarray):
            raise TypeError("pb_utils.Tensor takes a numpy array")
        self._name, self._array = name, array

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array


class InferenceRequest:
    def __init__(self, inputs: list[Tensor]) -> None:
        self._inputs = inputs

    def inputs(self) -> list[Tensor]:
        return self._inputs


class InferenceResponse:
    def __init__(self, output_tensors: list[Tensor], error: TritonError | None = None) -> None:
        self._outputs, self._error = output_tensors, error

    def output_tensors(self) -> list[Tensor]:
        return self._outputs

    def has_error(self) -> bool:
        return self._error is not None

    def error(self) -> TritonError | None:
        return self._error


TRITON_TO_NUMPY = {
    "TYPE_FP32": np.float32,
    "TYPE_FP16": np.float16,
    "TYPE_INT64": np.int64,
    "TYPE_STRING": np.object_,
}


def _stub() -> ModuleType:
    mod = ModuleType("triton_python_backend_utils")
    mod.Tensor, mod.InferenceRequest, mod.InferenceResponse, mod.TritonError = (
        Tensor,
        InferenceRequest,
        InferenceResponse,
        TritonError,
    )
    mod.get_input_tensor_by_name = lambda request, name: next(
        (t for t in request.inputs() if t.name() == name), None
    )
    mod.triton_string_to_numpy = lambda s: TRITON_TO_NUMPY[s]
    return mod


@pytest.fixture
def pb_utils(monkeypatch):
    mod = _stub()
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", mod)
    return mod


def load_python_model(repo: Path, name: str):
    """Load `repo/name/1/model.py` as Triton does and initialize its TritonPythonModel with the
    args Triton passes (the config as JSON, the model's folder)."""
    spec = importlib.util.spec_from_file_location(f"triton_model_{name}", repo / name / "1" / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.TritonPythonModel()
    config = parse_config((repo / name / "config.pbtxt").read_text())
    model.initialize(
        {
            "model_config": config_json(config),
            "model_repository": str(repo / name),
            "model_version": "1",
            "model_name": name,
            "model_instance_kind": "CPU",
        }
    )
    return model


def outputs(response: InferenceResponse) -> dict[str, np.ndarray]:
    assert not response.has_error(), response.error().message()
    return {t.name(): t.as_numpy() for t in response.output_tensors()}


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def demo(tiny_demo):
    """The demo's run at tiny settings (conftest.tiny_demo): its INT8 checkpoint, the toy JPEGs, the Q/DQ ONNX."""
    return tiny_demo


@pytest.fixture(scope="module")
def repo(demo):
    result = export_artifact(demo.int8_checkpoint, "triton", demo.out / "model_repository", max_batch=16)
    return result


def test_export_writes_the_ensemble_of_jpeg_model_and_labels(demo, repo):
    root = repo.artifact
    assert repo.format == "triton" and repo.quantized and repo.lint is not None and not repo.lint.errors
    names = sorted(p.name for p in root.iterdir())
    assert names == ["int8", "int8_jpeg", "int8_labels", "int8_model"]
    configs = {n: json.loads(config_json(m)) for n, m in read_configs(root).items()}
    model = configs["int8_model"]
    assert model["backend"] == "onnxruntime" and model["max_batch_size"] == 16
    assert "dynamic_batching" in model
    # The coefficient contract: y [64, Hb, Wb], cbcr [128, Hb/2, Wb/2], qt [3, 64], FP32 for ONNX Runtime.
    assert [(t["name"], t["data_type"], [int(d) for d in t["dims"]]) for t in model["input"]] == [
        ("y", "TYPE_FP32", [64, 4, 4]),
        ("cbcr", "TYPE_FP32", [128, 2, 2]),
        ("qt", "TYPE_FP32", [3, 64]),
    ]
    assert model["output"][0]["label_filename"] == "labels.txt"
    jpeg = configs["int8_jpeg"]
    assert jpeg["backend"] == "python" and jpeg["input"][0]["data_type"] == "TYPE_STRING"
    assert jpeg["parameters"]["input_size"]["string_value"] == "32"
    ensemble = configs["int8"]
    assert ensemble["platform"] == "ensemble" and "dynamic_batching" not in ensemble
    steps = ensemble["ensemble_scheduling"]["step"]
    assert [s["model_name"] for s in steps] == ["int8_jpeg", "int8_model", "int8_labels"]
    assert [o["name"] for o in ensemble["output"]] == ["label", "probability", "index", "logits"]
    labels = (root / "int8_labels" / "labels.txt").read_text().splitlines()
    assert labels == list(load_checkpoint(demo.int8_checkpoint).class_names)
    # The ONNX model inside is a dctq artifact: its sidecar, and the integer form ONNX Runtime fuses.
    onnx_path = root / "int8_model" / "1" / "model.onnx"
    assert repo.sidecar == sidecar_path(onnx_path)
    meta = load_artifact(onnx_path).meta
    assert meta.quantized and meta.extra["triton"]["ort_rewrite"]["activations_uint8"] > 0
    assert not any(p.name.startswith(".") for p in root.parent.iterdir() if "staging" in p.name)


def test_render_pbtxt_writes_what_the_text_format_reads():
    text = render_pbtxt(
        {"name": 'a "b"', "max_batch_size": 4, "input": [{"name": "x", "dims": [1, 2]}], "skip": None}
    )
    message = parse_config(text)
    assert (message.name, message.max_batch_size, list(message.input[0].dims)) == ('a "b"', 4, [1, 2])


def test_every_config_parses_strictly_with_triton_schema(repo):
    for path in repo.artifact.glob("*/config.pbtxt"):
        message = parse_config(path.read_text(), str(path))
        assert message.name == path.parent.name
        assert message.max_batch_size == 16
    with pytest.raises(ExportError, match="no field named"):
        parse_config('name: "m"\nmax_batch: 8\n')
    with pytest.raises(ExportError, match="TYPE_FLOAT32"):
        parse_config('input { name: "y" data_type: TYPE_FLOAT32 dims: [ 1 ] }')
    with pytest.raises(ExportError, match="oneof"):
        parse_config("dynamic_batching { }\nensemble_scheduling { }\n")


def test_check_repository_catches_broken_wiring(repo, tmp_path):
    import shutil

    copy = tmp_path / "repo"
    shutil.copytree(repo.artifact, copy)
    assert set(check_repository(copy)) == {"int8", "int8_jpeg", "int8_labels", "int8_model"}
    config = copy / "int8_model" / "config.pbtxt"
    config.write_text(config.read_text().replace("dims: [ 64, 4, 4 ]", "dims: [ 64, 8, 8 ]"))
    with pytest.raises(ExportError, match=r"does not fit int8_model\.y"):
        check_repository(copy)
    (copy / "int8_model" / "1" / "model.onnx").unlink()
    with pytest.raises(ExportError, match=r"model\.onnx is missing"):
        check_repository(copy)


def test_ensemble_steps_give_dctq_predict_labels(demo, repo, pb_utils):
    root = repo.artifact
    files = sorted(demo.data.rglob("*.jpg"))[::5][:6]
    jpeg_model = load_python_model(root, "int8_jpeg")
    label_model = load_python_model(root, "int8_labels")
    session = ort.InferenceSession(
        str(root / "int8_model" / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    # Two requests as Triton's dynamic batcher hands them over: [n, 1] BYTES each.
    requests = [
        pb_utils.InferenceRequest(
            [pb_utils.Tensor("jpeg", np.array([[f.read_bytes()] for f in part], dtype=object))]
        )
        for part in (files[:4], files[4:])
    ]
    labels, probabilities = [], []
    for response in jpeg_model.execute(requests):
        coefs = outputs(response)
        assert coefs["y"].dtype == np.float32 and coefs["y"].shape[1:] == (64, 4, 4)
        assert coefs["qt"].shape[1:] == (3, 64)
        (logits,) = session.run(None, coefs)
        request = pb_utils.InferenceRequest([pb_utils.Tensor("logits", logits)])
        (answer,) = label_model.execute([request])
        out = outputs(answer)
        assert out["label"].shape == (len(logits), 1) and out["index"].dtype == np.int64
        labels += [b.decode() for b in out["label"][:, 0]]
        probabilities += out["probability"][:, 0].tolist()
    expected = predict(demo.onnx, files, backend="ort")
    assert labels == [p.label for p in expected]
    assert np.allclose(probabilities, [p.probability for p in expected], atol=1e-4)


def test_a_bad_file_fails_only_its_own_request(demo, repo, pb_utils):
    jpeg_model = load_python_model(repo.artifact, "int8_jpeg")
    good = next(demo.data.rglob("*.jpg")).read_bytes()
    requests = [
        pb_utils.InferenceRequest([pb_utils.Tensor("jpeg", np.array([[b"not a jpeg"]], dtype=object))]),
        pb_utils.InferenceRequest(
            [pb_utils.Tensor("jpeg", np.array([[good[: len(good) // 2]]], dtype=object))]
        ),
        pb_utils.InferenceRequest([pb_utils.Tensor("jpeg", np.array([[good]], dtype=object))]),
    ]
    first, second, third = jpeg_model.execute(requests)
    assert first.has_error() and "not a JPEG" in first.error().message()
    assert second.has_error() and "image 0" in second.error().message()
    assert outputs(third)["y"].shape == (1, 64, 4, 4)


def test_a_tensorrt_plan_beside_the_checkpoint_gets_its_own_chain(demo, tmp_path):
    # The engine file is copied as it is; its sidecar (as `dctq export --format tensorrt` writes it) types
    # the inputs: FP16 coefficients, FP32 quant tables, a profile up to batch 8.
    engine = demo.int8_checkpoint.with_suffix(".engine")
    onnx_meta = json.loads(sidecar_path(demo.onnx).read_text())
    for spec in onnx_meta["inputs"]:
        spec["dtype"] = "float16" if spec["name"] != "qt" else "float32"
    engine.write_bytes(b"plan bytes")
    sidecar_path(engine).write_text(
        json.dumps(
            {
                **onnx_meta,
                "kind": "engine",
                "build": {"batch": [1, 4, 8]},
                "artifact": artifact_binding(engine),
            }
        )
    )
    try:
        result = export_artifact(demo.int8_checkpoint, "triton", tmp_path / "repo", max_batch=16)
    finally:
        engine.unlink()
        sidecar_path(engine).unlink()
    root = result.artifact
    configs = {n: json.loads(config_json(m)) for n, m in read_configs(root).items()}
    assert {"int8", "int8_trt", "int8_trt_jpeg", "int8_trt_model", "int8_trt_labels"} <= set(configs)
    plan = configs["int8_trt_model"]
    assert plan["backend"] == "tensorrt" and plan["max_batch_size"] == 8
    assert plan["instance_group"][0]["kind"] == "KIND_GPU"
    assert [t["data_type"] for t in plan["input"]] == ["TYPE_FP16", "TYPE_FP16", "TYPE_FP32"]
    assert [t["data_type"] for t in configs["int8_trt_jpeg"]["output"]] == [
        "TYPE_FP16",
        "TYPE_FP16",
        "TYPE_FP32",
    ]
    assert (root / "int8_trt_model" / "1" / "model.plan").read_bytes() == b"plan bytes"


def test_a_plan_of_another_model_is_refused(demo, tmp_path):
    engine = tmp_path / "other.engine"
    meta = json.loads(sidecar_path(demo.onnx).read_text())
    engine.write_bytes(b"plan")
    bound = {**meta, "class_names": ["a", "b"], "kind": "engine", "artifact": artifact_binding(engine)}
    sidecar_path(engine).write_text(json.dumps(bound))
    with pytest.raises(ExportError, match="another model"):
        export_triton(load_checkpoint(demo.int8_checkpoint), tmp_path / "repo", name="x", engine=engine)
    assert not (tmp_path / "repo").exists() or not any((tmp_path / "repo").iterdir())


def test_re_export_replaces_its_models_and_keeps_others(demo, tmp_path):
    root = tmp_path / "model_repository"
    (root / "someone_else" / "1").mkdir(parents=True)
    (root / "int8_model" / "1").mkdir(parents=True)
    (root / "int8_model" / "stale.txt").write_text("old")
    args = ["export", str(demo.int8_checkpoint), "--format", "triton", "--out", str(root), "--max-batch", "8"]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    reported = json.loads(result.stdout)
    assert reported["format"] == "triton" and reported["artifact"] == str(root) and reported["lint"]["ok"]
    assert (root / "someone_else" / "1").is_dir()
    assert not (root / "int8_model" / "stale.txt").exists()
    assert parse_config((root / "int8_model" / "config.pbtxt").read_text()).max_batch_size == 8
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_an_fp32_rgb_model_is_served_from_its_pixels(tmp_path, make_jpeg, pb_utils):
    from helpers import saved_model

    from dctq.deploy.predict import read_dct_input, read_rgb_input
    from dctq.deploy.triton.python_models import decode_jpeg_input

    _, ckpt = saved_model(tmp_path / "rgb.pt", "resnet20", ["cat", "dog"], num_classes=2)
    result = export_artifact(ckpt, "triton", tmp_path / "repo", max_batch=4)
    assert not result.quantized and result.lint is not None
    configs = {n: json.loads(config_json(m)) for n, m in read_configs(result.artifact).items()}
    model = configs["rgb_model"]
    assert [(t["name"], [int(d) for d in t["dims"]]) for t in model["input"]] == [("x", [3, 32, 32])]
    assert configs["rgb_jpeg"]["parameters"]["input_kind"]["string_value"] == "rgb"
    image = make_jpeg("a.jpg", height=40, width=48)
    decoder = load_python_model(result.artifact, "rgb_jpeg")
    (response,) = decoder.execute(
        [pb_utils.InferenceRequest([pb_utils.Tensor("jpeg", np.array([[image.read_bytes()]], dtype=object))])]
    )
    assert np.array_equal(outputs(response)["x"][0], read_rgb_input(image, 32)["x"])
    # The DCT path reads exactly what `dctq predict` reads (coefficients as stored, cropped to the grid).
    dct = decode_jpeg_input(image.read_bytes(), "dct", 32)
    expected = read_dct_input(image, 32)
    assert all(np.array_equal(dct[k], expected[k]) for k in ("y", "cbcr", "qt"))
