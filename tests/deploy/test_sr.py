"""SR artifacts: W8A8 Q/DQ ONNX with dynamic height and width that passes the TensorRT linter and matches
the PyTorch fake-quant model in PSNR; low-bit models exported on their trained grid; evaluation per set
and image; upscaled files; the SR / classifier mix-ups refused."""

from __future__ import annotations

import numpy as np
import onnx
import PIL.Image
import pytest
import torch
from helpers import hr_folder, saved_model, tiny_sr_run
from onnx import numpy_helper

from dctq.calibration.qat.config import QatConfig
from dctq.calibration.quant.recipe import build_recipe
from dctq.calibration.workflow.plan import QatPlan
from dctq.calibration.workflow.quantize import quantize_checkpoint
from dctq.common.errors import ConfigError, QuantizationError
from dctq.deploy.artifact import load_artifact
from dctq.deploy.backends.registry import load_runner
from dctq.deploy.export.formats import export_artifact
from dctq.deploy.profiling.latency import profile
from dctq.deploy.sr import evaluate_sr, upscale_files


@pytest.fixture(scope="module")
def sr(tmp_path_factory):
    """(folder of HR images, FP checkpoint, W8A8 and W4A4 QAT checkpoints) of a tiny x2 EDSR."""
    root = tmp_path_factory.mktemp("srdeploy")
    folder = hr_folder(root / "hr", n=6, size=(40, 36))
    fp = tiny_sr_run(folder, root / "fp")[0].best_path
    config = QatConfig(method="qat", epochs=1, steps_per_epoch=2, batch_size=2, calib_batches=2)
    paths = {}
    for bits in ("w8a8", "w4a4"):
        quantize_checkpoint(
            fp, root / f"{bits}.pt", method="qat", recipe=build_recipe(bits=bits), qat=QatPlan(folder, config)
        )
        paths[bits] = root / f"{bits}.pt"
    return folder, fp, paths


def test_w8a8_onnx_has_dynamic_spatial_axes_passes_the_linter_and_matches_pytorch(sr, tmp_path):
    folder, _, paths = sr
    result = export_artifact(paths["w8a8"], "onnx", tmp_path / "q.onnx")
    assert result.lint is not None and result.lint.ok and not result.lint.errors
    graph = onnx.load(str(tmp_path / "q.onnx")).graph
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims[1] == 3 and all(isinstance(d, str) for d in (dims[0], dims[2], dims[3]))
    art = load_artifact(tmp_path / "q.onnx")
    assert art.meta.task == "sr" and art.meta.scale == 2 and art.meta.outputs[0].name == "image"
    runner = load_runner(art)
    for h, w in ((9, 13), (20, 7)):
        assert tuple(runner.predict({"x": torch.rand(2, 3, h, w)}).shape) == (2, 3, 2 * h, 2 * w)
    ort = evaluate_sr(tmp_path / "q.onnx", [folder])
    torch_report = evaluate_sr(paths["w8a8"], [folder])
    assert ort.backend == "ort" and torch_report.backend == "torch"
    gap = [abs(a.psnr - b.psnr) for a, b in zip(ort.sets[0].images, torch_report.sets[0].images, strict=True)]
    assert max(gap) < 0.05 and len(gap) == 6


def _grid_of_weights(path) -> set[int]:
    """The integers every weight QuantizeLinear of the graph produces (computed from its initializers)."""
    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    values: set[int] = set()
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] in inits:
            w, scale = inits[node.input[0]], inits[node.input[1]]
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            shape = [1] * w.ndim
            shape[axis] = -1
            values |= set(
                np.unique(np.round(w / scale.reshape(shape) if scale.ndim else w / scale))
                .astype(int)
                .tolist()
            )
    return values


def test_low_bit_models_export_on_their_trained_grid(sr, tmp_path):
    folder, _, paths = sr
    with pytest.raises(QuantizationError, match="--low-bit"):
        export_artifact(paths["w4a4"], "onnx", tmp_path / "no.onnx")
    assert not (tmp_path / "no.onnx").exists()
    export_artifact(paths["w4a4"], "onnx", tmp_path / "q4.onnx", low_bit=True)
    assert _grid_of_weights(tmp_path / "q4.onnx") <= set(range(-7, 8))
    ops = {n.op_type for n in onnx.load(str(tmp_path / "q4.onnx")).graph.node}
    assert "Clip" in ops or "Max" in ops  # the activation clamp to the low-bit interval
    ort = evaluate_sr(tmp_path / "q4.onnx", [folder])
    ref = evaluate_sr(paths["w4a4"], [folder])
    assert abs(ort.sets[0].psnr - ref.sets[0].psnr) < 0.05


def test_upscaled_files_and_profile(sr, tmp_path):
    folder, fp, _ = sr
    low = tmp_path / "low.jpg"
    PIL.Image.open(folder / "img_000.png").convert("RGB").save(low, quality=90)
    done = upscale_files(fp, [low], tmp_path / "high.png")
    assert done[0].output_size == (80, 72) and PIL.Image.open(tmp_path / "high.png").size == (80, 72)
    many = upscale_files(fp, [low, folder / "img_001.png"], tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["img_001_x2.png", "low_x2.png"]
    assert many[0].output.endswith("low_x2.png")
    with pytest.raises(Exception, match="format"):
        upscale_files(fp, [low], tmp_path / "high.xyz")
    assert not (tmp_path / "high.xyz").exists()
    report = profile(fp, batches=(1,), warmup=1, iters=2, input_size=24)
    assert report.input_shape == (3, 24, 24) and report.rows[0].p50_ms > 0


def test_sr_and_classifier_artifacts_are_not_mixed_up(sr, tmp_path):
    folder, _, _ = sr
    _, classifier = saved_model(tmp_path / "c.pt", "resnet20", ["a", "b"], num_classes=2)
    with pytest.raises(ConfigError, match="not a super-resolution model"):
        evaluate_sr(classifier, [folder])
    with pytest.raises(ConfigError, match="not a super-resolution model"):
        upscale_files(classifier, [folder / "img_000.png"], tmp_path / "x.png")


def test_tensorrt_plan_of_an_sr_model_spans_lr_sizes(sr, tmp_path):
    """The engine build's plan (plain Python, no TensorRT needed): dynamic H/W get a profile of LR sides
    16..256 around the stated 64; the build itself runs where TensorRT is (tests/deploy/backends/tensorrt)."""
    from dctq.deploy.backends.tensorrt.build import BuildConfig, plan_build

    _, _, paths = sr
    export_artifact(paths["w8a8"], "onnx", tmp_path / "q.onnx")
    plan = plan_build(tmp_path / "q.onnx", BuildConfig(batch=(1, 1, 4)))
    assert plan.shapes["x"] == ((1, 3, 16, 16), (1, 3, 64, 64), (4, 3, 256, 256))
    assert plan.meta.task == "sr"


@pytest.mark.trt
def test_tensorrt_engine_of_an_sr_model_matches_onnx_runtime(sr, tmp_path):
    trt = pytest.importorskip("tensorrt", reason="pip install 'dctq[tensorrt]' (TensorRT >= 11, NVIDIA GPU)")
    if not torch.cuda.is_available():
        pytest.skip("TensorRT tests need a CUDA GPU")
    from dctq.deploy.backends.tensorrt.build import BuildConfig, build_engine
    from dctq.deploy.backends.tensorrt.engine import TrtEngine

    _, _, paths = sr
    export_artifact(paths["w8a8"], "onnx", tmp_path / "q.onnx")
    sidecar = build_engine(tmp_path / "q.onnx", tmp_path / "q.engine", BuildConfig(batch=(1, 1, 2)))
    assert sidecar["build"]["tensorrt"] == trt.__version__
    x = torch.rand(1, 3, 24, 40)
    (got,) = TrtEngine(tmp_path / "q.engine")(x.cuda())
    ref = load_runner(tmp_path / "q.onnx").predict({"x": x})
    err = float(((ref - got.float().cpu()) ** 2).sum() / (ref**2).sum())
    assert got.shape == (1, 3, 48, 80) and 10 * np.log10(1 / max(err, 1e-30)) > 30
