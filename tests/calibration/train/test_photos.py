"""Training at 224 px from an ImageFolder of photographs (random resized crops in the DCT domain and in
pixels), the input policy recorded in the checkpoint, and predictions on photographs of other sizes that
follow it."""

from __future__ import annotations

import pytest
from helpers import photo_jpeg
from typer.testing import CliRunner

from dctq.calibration.quant.checkpoint import QUANT_RECIPE_KEY
from dctq.calibration.train.config import TrainConfig
from dctq.calibration.train.data import build_train_data, train_input_policy
from dctq.calibration.train.loop import train
from dctq.calibration.workflow.plan import PtqData
from dctq.calibration.workflow.quantize import quantize_checkpoint
from dctq.deploy.artifact import load_artifact
from dctq.deploy.export.formats import export_artifact
from dctq.deploy.predict import predict
from dctq.jpeg.input_policy import InputPolicy, default_policy
from dctq.models.checkpoint import input_policy_of, load_checkpoint

SIZES = ((300, 451), (427, 640), (512, 512), (240, 320))
SUBSAMPLINGS = ("4:2:0", "4:2:2", "4:4:0", "4:4:4")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """An ImageFolder of 2 classes x 4 photographs at several sizes and subsamplings."""
    root = tmp_path_factory.mktemp("photos") / "data"
    for c, names in enumerate((("chelsea", "coffee"), ("rocket", "astronaut"))):
        folder = root / f"class{c}"
        folder.mkdir(parents=True)
        for i in range(4):
            data = photo_jpeg(names[i % 2], SIZES[i], subsampling=SUBSAMPLINGS[(i + c) % 4], quality=85)
            (folder / f"{i}.jpg").write_bytes(data)
    return root


@pytest.mark.parametrize(
    ("arch", "augment"), [("dct_upsampling", "rrc"), ("dct_upsampling", "rrc-pixels"), ("resnet50", "rrc")]
)
def test_training_on_photographs_records_the_policy(photos, tmp_path, arch, augment):
    config = TrainConfig(
        arch, arch_kwargs={"width": 0.0625}, epochs=1, batch_size=2, val_fraction=0.25, augment=augment,
        max_steps_per_epoch=1, stem_stats_batches=1, device="cpu",
    )  # fmt: skip
    data = build_train_data(photos, config)
    assert data.train[0].label in (0, 1)  # the random resized crop reads every layout
    result = train(config, data.train, data.val, tmp_path / "run")
    loaded = load_checkpoint(result.best_path)
    assert input_policy_of(loaded) == train_input_policy(arch) == default_policy(loaded.model.input_kind, 224)
    assert input_policy_of(loaded).resize == 256
    preds = predict(result.best_path, sorted(photos.rglob("*.jpg"))[:3], top_k=1)
    assert [p.note for p in preds] == [None, None, None]  # resized as the policy says: nothing to warn
    if augment != "rrc-pixels":
        return
    # the policy travels with the quantized checkpoint and its ONNX sidecar
    q = quantize_checkpoint(
        result.best_path, tmp_path / "q.pt", calib=PtqData(photos, split="all", num_images=4, batch_size=2)
    )
    assert input_policy_of(load_checkpoint(q.path)) == input_policy_of(loaded)
    onnx = export_artifact(q.path, "onnx", tmp_path / "q.onnx")
    assert load_artifact(onnx.artifact).meta.extra["input_policy"] == input_policy_of(loaded).to_dict()


def test_a_checkpoint_without_a_policy_crops_and_says_so(photos, tmp_path):
    from dctq.models.checkpoint import save_checkpoint
    from dctq.models.registry import create_model

    path = save_checkpoint(
        tmp_path / "old.pt", create_model("dct_upsampling", num_classes=2, width=0.0625), arch="dct_upsampling",
        arch_kwargs={"num_classes": 2, "width": 0.0625}, class_names=["a", "b"],
    )  # fmt: skip
    assert input_policy_of(load_checkpoint(path)) == InputPolicy("dct", 224)  # legacy: no resize
    (pred,) = predict(path, [next(photos.rglob("0.jpg"))], top_k=1)
    assert "cropped to its centre 224x224" in pred.note
    assert QUANT_RECIPE_KEY not in load_checkpoint(path).extra
    result = CliRunner().invoke(
        __import__("dctq.cli.main", fromlist=["app"]).app,
        ["predict", str(path), str(next(photos.rglob("0.jpg")))],
    )
    assert result.exit_code == 0 and "warning:" in result.output and "does not resize" in result.output
