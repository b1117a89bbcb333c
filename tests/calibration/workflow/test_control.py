"""`dctq quantize` layer control: --skip/--override/--recipe FILE, --calib-cache (reused without touching
an image), --sensitivity (JSON + PNG) and --max-drop (layers back to float, saved and reloaded), and the
rules that go with them, in the library and the CLI alike."""

from __future__ import annotations

import json

import pytest
import torch
import typer
from helpers import forbid_images
from PIL import Image
from typer.testing import CliRunner

from dctq.calibration.calib_cache import load_cache
from dctq.calibration.quant.layers import quantized_layers
from dctq.calibration.quant.model import iter_quantizers
from dctq.calibration.quant.recipe import FLOAT, PRESETS, LayerRule, QuantRecipe
from dctq.calibration.quant.recipe_file import load_recipe
from dctq.calibration.train.config import TrainConfig
from dctq.calibration.train.data import dataset_for_arch
from dctq.calibration.workflow.plan import LayerPlan, PtqData, ValData
from dctq.calibration.workflow.quantize import quantize_checkpoint
from dctq.cli import quantize_cmd
from dctq.common.errors import QuantizationError
from dctq.jpeg.dataset import make_loader
from dctq.jpeg.recompress import QualityPolicy
from dctq.jpeg.splits import split_data
from dctq.models.checkpoint import load_checkpoint, save_checkpoint
from dctq.models.registry import create_model
from dctq.models.stem import compute_stem_stats

ARCH = "dct_cifar_upsampling"
KWARGS = {"num_classes": 2, "widths": [8, 8], "depths": [1, 1]}
runner = CliRunner()


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def root() -> None:
        """Group, so that `quantize` is a sub-command as under `dctq`."""

    quantize_cmd.register(app)
    return app


APP = _app()


@pytest.fixture
def fp_ckpt(jpeg_folder, tmp_path):
    """A tiny DCT net fitted to the folder's 8 images (so quantization has accuracy to lose)."""
    torch.manual_seed(0)
    model = create_model(ARCH, **KWARGS)
    split = split_data(jpeg_folder, 0.5)
    data = dataset_for_arch(ARCH, split.root, split.samples("all"), train=False, policy=QualityPolicy())
    (batch,) = make_loader(data, 8)
    inputs = (batch["y"].float(), batch["cbcr"].float(), batch["qt"].float())
    model.stem.set_stats(compute_stem_stats([inputs]))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    for _ in range(40):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(*inputs), batch["label"]).backward()
        opt.step()
    with torch.no_grad():
        assert (model.eval()(*inputs).argmax(1) == batch["label"]).all()
    path = tmp_path / "fp" / "best.pt"
    config = TrainConfig(ARCH, arch_kwargs={"widths": [8, 8], "depths": [1, 1]}, val_fraction=0.5).to_dict()
    save_checkpoint(
        path,
        model.eval(),
        arch=ARCH,
        arch_kwargs=KWARGS,
        class_names=["cat", "dog"],
        extra={"train_config": config},
    )
    return path


def _amax(model) -> dict[str, list[float]]:
    return {n: q.amax.tolist() for n, q in iter_quantizers(model)}


def test_a_cache_calibrates_other_recipes_without_reading_an_image(
    fp_ckpt, jpeg_folder, tmp_path, monkeypatch
):
    cache = tmp_path / "calib.pt"
    first = quantize_checkpoint(fp_ckpt, None, calib=PtqData(jpeg_folder, cache=cache, batch_size=2))
    assert cache.is_file() and first.info["ptq"]["calib_cache"] == {"file": str(cache), "reused": False}
    assert load_cache(cache).data["images"] == 4
    direct = quantize_checkpoint(
        fp_ckpt, None, recipe=PRESETS["w4a4"], calib=PtqData(jpeg_folder, batch_size=2)
    )
    forbid_images(monkeypatch, tmp_path)
    reused = quantize_checkpoint(
        fp_ckpt, tmp_path / "q.pt", recipe=PRESETS["w4a4"], calib=PtqData(None, cache=cache)
    )
    assert reused.info["ptq"]["calib_cache"]["reused"] and reused.info["ptq"]["images"] == 4
    assert _amax(reused.model) == _amax(direct.model)
    monkeypatch.undo()
    back = load_checkpoint(tmp_path / "q.pt").model
    assert _amax(back) == _amax(direct.model)


def test_a_cache_is_refused_for_other_images_or_another_model(fp_ckpt, jpeg_folder, tmp_path):
    cache = tmp_path / "calib.pt"
    quantize_checkpoint(fp_ckpt, None, calib=PtqData(jpeg_folder, cache=cache, batch_size=2))
    with pytest.raises(
        QuantizationError, match=r"other calibration images \(batch_size: cache 2 vs now 64\)"
    ):
        quantize_checkpoint(fp_ckpt, None, calib=PtqData(jpeg_folder, cache=cache))
    other = tmp_path / "other.pt"
    loaded = load_checkpoint(fp_ckpt)
    torch.nn.init.normal_(loaded.model.fc.weight)
    save_checkpoint(
        other, loaded.model, arch=ARCH, arch_kwargs=KWARGS, class_names=["cat", "dog"], extra=loaded.extra
    )
    with pytest.raises(QuantizationError, match="statistics of another model"):
        quantize_checkpoint(other, None, calib=PtqData(None, cache=cache))
    with pytest.raises(QuantizationError, match="an existing --calib-cache file"):
        PtqData(None, cache=tmp_path / "none.pt")


def test_sensitivity_and_fallback_write_a_checkpoint_that_reloads(fp_ckpt, jpeg_folder, tmp_path):
    out = tmp_path / "q.pt"
    plan = LayerPlan(sensitivity=True, metric="sqnr", max_drop=0.0, val=ValData(jpeg_folder, split="all"))
    result = quantize_checkpoint(
        fp_ckpt, out, recipe=QuantRecipe(2, 2, "max"), calib=PtqData(jpeg_folder), layers=plan
    )
    assert result.info["layers"]["quantized_top1"] < 100
    layers = result.info["layers"]
    report = json.loads((tmp_path / "q.sensitivity.json").read_text())
    assert report["sensitivity"]["layers"][0]["layer"] == layers["ranking"][0]
    assert Image.open(tmp_path / "q.sensitivity.png").format == "PNG"
    returned = layers["fallback"]["returned_to_float"]
    assert returned and result.recipe.rules[: len(returned)] == tuple(LayerRule(n, "skip") for n in returned)
    back = load_checkpoint(out)
    assert not set(returned) & set(quantized_layers(back.model))
    assert back.extra["quantization"]["layers"]["fallback"]["met"] == layers["fallback"]["met"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--calib", "{data}", "--val-split", "all"],
            "--val-split only apply with --sensitivity or --max-drop",
        ),
        (["--method", "intraq", "--calib-cache", "{tmp}/c.pt"], "--calib-cache applies to --method ptq only"),
        (["--method", "bnstats", "--sensitivity"], "give --val DIR|cifar10"),
        (["--calib", "{data}", "--calib-split", "all", "--max-drop", "1"], "give --val"),
        (["--calib", "{data}", "--max-drop", "-1"], "--max-drop takes top-1 points >= 0"),
        (
            ["--calib", "{data}", "--sensitivity", "--sensitivity-metric", "loss"],
            "--sensitivity-metric must be",
        ),
        (["--calib", "{data}", "--override", "fc:input=3x"], "--override 'fc:input=3x'"),
        (["--calib", "{data}", "--recipe", "{tmp}/none.toml"], "cannot read it"),
        (["--calib-cache", "{tmp}/none.pt"], "give --calib DIR"),
    ],
)
def test_bad_layer_options_exit_1_with_a_clear_message(fp_ckpt, jpeg_folder, tmp_path, extra, message):
    out = tmp_path / "q.pt"
    args = [a.format(data=jpeg_folder, tmp=tmp_path) for a in extra]
    result = runner.invoke(APP, ["quantize", str(fp_ckpt), "--out", str(out), *args])
    assert result.exit_code == 1, result.output
    assert message in " ".join(result.output.split()) and "Traceback" not in result.output
    assert not out.exists()


def test_cli_rules_recipe_file_and_saved_recipe(fp_ckpt, jpeg_folder, tmp_path):
    recipe_file = tmp_path / "r.toml"
    recipe_file.write_text('preset = "w4a4"\n[[rules]]\npattern = "stages.0.0.conv1"\ninput = 8\n')
    saved = tmp_path / "used.toml"
    out = tmp_path / "q.pt"
    result = runner.invoke(
        APP,
        ["quantize", str(fp_ckpt), "--out", str(out), "--calib", str(jpeg_folder), "--recipe", str(recipe_file),
         "--skip", "fc", "--override", "stages.1.*:weight=float", "--save-recipe", str(saved), "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    recipe = load_recipe(saved)
    assert recipe.rules[:3] == (
        LayerRule("fc", "skip"),
        LayerRule("stages.1.*", weight=FLOAT),
        LayerRule("stages.0.0.conv1", input=8),
    )
    assert QuantRecipe.from_dict(json.loads(result.output)["recipe"]) == recipe
    bits = {n: q.bits for n, q in iter_quantizers(load_checkpoint(out).model)}
    assert bits["stages.0.0.conv1.input_quantizer"] == 8 and bits["stages.0.0.conv1.weight_quantizer"] == 4
    assert "fc.input_quantizer" not in bits and "stages.1.0.conv1.weight_quantizer" not in bits


def test_cli_sensitivity_summary(fp_ckpt, jpeg_folder, tmp_path):
    out = tmp_path / "q.pt"
    result = runner.invoke(
        APP,
        ["quantize", str(fp_ckpt), "--out", str(out), "--calib", str(jpeg_folder), "--bits", "w4a4",
         "--sensitivity", "--val", str(jpeg_folder), "--val-split", "all", "--max-drop", "100"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "most sensitive" in text and "met: drop" in text and "sensitivity report" in text
    assert (tmp_path / "q.sensitivity.png").is_file() and (tmp_path / "q.sensitivity.json").is_file()


def test_a_cache_alone_gives_the_held_out_images_of_its_source(fp_ckpt, jpeg_folder, tmp_path):
    cache = tmp_path / "calib.pt"
    quantize_checkpoint(fp_ckpt, None, calib=PtqData(jpeg_folder, cache=cache))
    result = quantize_checkpoint(
        fp_ckpt,
        None,
        recipe=PRESETS["w4a4"],
        calib=PtqData(None, cache=cache),
        layers=LayerPlan(max_drop=5.0),
    )
    assert (
        result.info["layers"]["val"]["data"] == str(jpeg_folder)
        and result.info["layers"]["val"]["split"] == "val"
    )


def test_held_out_options_apply_to_the_default_validation_split(fp_ckpt, jpeg_folder, tmp_path):
    result = runner.invoke(
        APP,
        ["quantize", str(fp_ckpt), "--out", str(tmp_path / "q.pt"), "--calib", str(jpeg_folder), "--bits", "w4a4",
         "--max-drop", "100", "--val-images", "1", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    val = json.loads(result.output)["quantization"]["layers"]["val"]
    assert (val["data"], val["split"], val["images"]) == (str(jpeg_folder), "val", 1)
