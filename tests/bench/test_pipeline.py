"""bench/photos.py, bench/pipeline.py's stages and bench/scaling.py's symbolic-size copies (fast), and
bench/ort_profile.py on a tiny export (slow)."""

from __future__ import annotations

import numpy as np
import pytest
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
        tmp_path / "fp.pt", "dct_cifar_upsampling", ["a", "b"], num_classes=2, widths=[8, 16], depths=[1, 1]
    )
    onnx_path = export_onnx(load_checkpoint(ckpt), tmp_path / "fp.onnx")
    result = load_bench("ort_profile").profile(onnx_path, 4, 1, 2, "output", tmp_path)
    assert result["run_ms_median"] > 0 and "Conv" in result["ops"]
    assert sum(v["share"] for v in result["ops"].values()) == pytest.approx(1.0)
    scaling = load_bench("scaling")
    (tmp_path / "dyn").mkdir()
    dynamic = scaling.spatially_dynamic(onnx_path, tmp_path / "dyn")
    meta = load_artifact(dynamic).meta
    runner = OrtRunner(load_artifact(dynamic), threads=1)
    for size in (32, 64):
        feeds = scaling.feeds_at(meta, 2, size)
        assert feeds["y"].shape == (2, 64, size // 8, size // 8)
        out = runner.session.run(None, feeds)[0]
        assert out.shape == (2, 2) and np.isfinite(out).all()
