"""bench/photos.py, bench/pipeline.py's stages and bench/scaling.py's symbolic-size copies (fast), and
bench/ort_profile.py on a tiny export (slow)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import load_bench, saved_model

pytest.importorskip("onnxruntime")
pytest.importorskip("skimage")
pytest.importorskip("simplejpeg")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    return load_bench("photos").photo_set(folder, 6, (500, 375))


def test_photo_set_writes_real_photographs_at_the_size_asked(photos):
    from PIL import Image

    assert len(photos) == 6 and len({p.parent.name for p in photos}) == 6  # one source photo per class
    for path in photos:
        with Image.open(path) as img:
            assert img.size == (500, 375) and img.format == "JPEG"
            assert np.asarray(img).std() > 10  # a photograph, not a flat image
    again = load_bench("photos").photo_set(photos[0].parents[1], 6, (500, 375))
    assert again == photos  # made once


def test_pipeline_stages_give_the_model_inputs(photos):
    bench = load_bench("pipeline")
    files = [p.read_bytes() for p in photos[:3]]
    dct = bench.dct_batch([bench.PIPELINES["dct"][0](d) for d in files])
    assert dct["y"].shape == (3, 64, 28, 28) and dct["cbcr"].shape == (3, 128, 14, 14)
    assert dct["qt"].shape == (3, 3, 64) and all(a.dtype == np.float32 for a in dct.values())
    assert np.array_equal(dct["y"], np.rint(dct["y"])) and np.abs(dct["y"]).max() > 10
    for name in ("rgb", "rgb_pillow"):
        read, prepare, kind = bench.PIPELINES[name]
        decoded = [read(d) for d in files]
        # scaled decode: the smallest libjpeg scale that keeps both sides >= 256 (375x500 -> itself)
        assert all(min(img.shape[:2]) >= 256 for img in decoded) and kind == "rgb"
        x = prepare(decoded)["x"]
        assert x.shape == (3, 3, 224, 224) and x.dtype == np.float32 and -3 < x.mean() < 3
    # simplejpeg decodes 375x500 at libjpeg-turbo's 6/8 scale (282x375), Pillow's draft (scales 1/2, 1/4,
    # 1/8 only) at full size: after the resize to 256 and the crop both give nearly the same pixels
    scaled, full = (bench.PIPELINES[n][0](files[0]) for n in ("rgb", "rgb_pillow"))
    assert scaled.shape == (282, 375, 3) and full.shape == (375, 500, 3)
    a, b = (bench._resize_crop(img).astype(int) for img in (scaled, full))
    assert a.shape == b.shape == (224, 224, 3) and np.abs(a - b).mean() < 4
    re = bench.reencode(files[0])
    assert re.y.shape == (64, 28, 28)
    feeds, read_s, prep_s = bench.read_and_prepare(("dct", files))
    assert feeds["y"].shape[0] == 3 and read_s > 0 and prep_s > 0


@pytest.mark.slow
def test_profile_and_symbolic_sizes_on_a_tiny_export(tmp_path):
    from dctq.deploy.artifact import load_artifact
    from dctq.deploy.backends.ort import OrtRunner
    from dctq.deploy.export.onnx import export_onnx
    from dctq.models.checkpoint import load_checkpoint

    _, ckpt = saved_model(
        tmp_path / "fp.pt", "dct_cifar_upsampling", ["a", "b"], num_classes=2, widths=[16, 32], depths=[1, 1]
    )  # widths of ORT's channel block (16): no padded MACs
    onnx_path = export_onnx(load_checkpoint(ckpt), tmp_path / "fp.onnx")
    result = load_bench("ort_profile").profile(onnx_path, 4, 1, 2, "output", tmp_path)
    scaling = load_bench("scaling")
    assert result["run_ms_median"] > 0 and "Conv" in result["ops"]
    assert sum(v["share"] for v in result["ops"].values()) == pytest.approx(1.0)
    # MACs from the shapes the profiler recorded = the model's own conv MACs at batch 4 (forward hooks)
    model = load_checkpoint(ckpt).model.eval()
    macs: list[int] = []
    hooks = [
        m.register_forward_hook(lambda m, _, out: macs.append(out.numel() * m.weight[0].numel()))
        for m in model.modules()
        if isinstance(m, torch.nn.Conv2d)
    ]
    feeds = scaling.feeds_at(load_artifact(onnx_path).meta, 4, 32)
    with torch.no_grad():
        model(*(torch.from_numpy(feeds[n]) for n in ("y", "cbcr", "qt")))
    for h in hooks:
        h.remove()
    convs = result["convs"]
    assert convs["nodes"] == len(macs) and round(convs["gmac"] * 1e9) == sum(macs)
    assert convs["ms"] <= sum(v["ms"] for v in result["ops"].values()) and convs["gmac_per_s"] > 0
    # the INT8 graph's QLinearConvs (weights pre-packed, absent from the profile) count the same MACs
    from dctq.calibration.ptq import ptq
    from dctq.calibration.quant.recipe import QuantRecipe
    from dctq.models import example_inputs

    qmodel = ptq(model, QuantRecipe(calibrator="max"), [example_inputs(model, 8, seed=s) for s in range(2)])
    int8 = export_onnx(load_checkpoint(ckpt).with_model(qmodel), tmp_path / "int8.onnx")
    (tmp_path / "int8").mkdir()
    q = load_bench("ort_profile").profile(int8, 4, 1, 2, "output", tmp_path / "int8")
    assert "QLinearConv" in q["ops"] and round(q["convs"]["gmac"] * 1e9) == sum(macs)
    # a DCT and an RGB file of the same name (as the benches write them): two copies, not one
    (tmp_path / "rgb").mkdir()
    _, rgb_ckpt = saved_model(tmp_path / "rgb.pt", "resnet20", ["a", "b"], num_classes=2)
    rgb_onnx = export_onnx(load_checkpoint(rgb_ckpt), tmp_path / "rgb" / "fp.onnx")
    (tmp_path / "pair").mkdir()
    pair = scaling.dynamic_pair(onnx_path, rgb_onnx, tmp_path / "pair")
    assert {k: load_artifact(v).meta.input_kind for k, v in pair.items()} == {"dct": "dct", "rgb": "rgb"}
    with pytest.raises(SystemExit, match="DCT and an RGB"):
        (tmp_path / "swapped").mkdir()
        scaling.dynamic_pair(rgb_onnx, onnx_path, tmp_path / "swapped")
    (tmp_path / "dyn").mkdir()
    dynamic = scaling.spatially_dynamic(onnx_path, tmp_path / "dyn")
    meta = load_artifact(dynamic).meta
    runner = OrtRunner(load_artifact(dynamic), threads=1)
    for size in (32, 64):
        feeds = scaling.feeds_at(meta, 2, size)
        assert feeds["y"].shape == (2, 64, size // 8, size // 8)
        out = runner.session.run(None, feeds)[0]
        assert out.shape == (2, 2) and np.isfinite(out).all()
