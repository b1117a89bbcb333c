"""`dctq quantize` and quantized checkpoints: PTQ per calibrator, zero-shot without any image, reload
through load_checkpoint, clear errors for bad usage."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
import textwrap

import pytest
import torch
from helpers import forbid_images
from typer.testing import CliRunner

from dctq.calibration.calibrators.registry import CALIBRATORS
from dctq.calibration.ptq import ptq
from dctq.calibration.quant.checkpoint import QUANT_RECIPE_KEY, save_quantized
from dctq.calibration.quant.model import calibrate, iter_quantizers, quantize_model, recipe_of
from dctq.calibration.quant.recipe import PRESETS, QuantRecipe, build_recipe, parse_bits
from dctq.calibration.train.config import TrainConfig
from dctq.calibration.train.data import dataset_for_arch
from dctq.calibration.workflow.plan import PtqData, ZeroShotPlan
from dctq.calibration.workflow.quantize import quantize_checkpoint
from dctq.calibration.zeroshot.config import SynthConfig, ZeroShotConfig
from dctq.calibration.zeroshot.data import load_synthetic
from dctq.calibration.zeroshot.synthesize import synthesize_checkpoint
from dctq.cli.main import app
from dctq.common.errors import QuantizationError
from dctq.common.records import read_metrics
from dctq.deploy.evaluate import evaluate
from dctq.jpeg.dataset import make_loader
from dctq.jpeg.recompress import QualityPolicy
from dctq.jpeg.splits import split_data
from dctq.models.checkpoint import load_checkpoint, save_checkpoint
from dctq.models.qabn import apply_qabn
from dctq.models.registry import create_model
from dctq.models.stem import compute_stem_stats

ARCH = "dct_cifar_upsampling"
KWARGS = {"num_classes": 2, "widths": [8, 8], "depths": [1, 1]}
# What `dctq train` saves with the FP weights: the validation split (val_fraction 0.25) comes from it.
FP_TRAIN_CONFIG = TrainConfig(
    ARCH, arch_kwargs={"widths": [8, 8], "depths": [1, 1]}, val_fraction=0.25
).to_dict()
runner = CliRunner()


APP = app  # the real `dctq` app: a command dropped from it fails these tests


def _batches(folder):
    split = split_data(folder, 0.1)
    data = dataset_for_arch(ARCH, split.root, split.samples("all"), train=False, policy=QualityPolicy())
    return list(make_loader(data, 4, shuffle=False))


def _args(batch):
    return batch["y"].float(), batch["cbcr"].float(), batch["qt"].float()


@pytest.fixture
def fp_ckpt(jpeg_folder, tmp_path):
    """An untrained tiny DCT net with stem statistics and BN running statistics from the folder."""
    torch.manual_seed(0)
    model = create_model(ARCH, **KWARGS)
    batches = _batches(jpeg_folder)
    model.stem.set_stats(compute_stem_stats([_args(b) for b in batches]))
    model.train()
    with torch.no_grad():
        for b in batches:
            model(*_args(b))
    path = tmp_path / "fp" / "best.pt"
    save_checkpoint(
        path,
        model.eval(),
        arch=ARCH,
        arch_kwargs=KWARGS,
        class_names=["cat", "dog"],
        extra={"train_config": FP_TRAIN_CONFIG, "epoch": 3},
    )
    return path


def _sqnr(ref: torch.Tensor, out: torch.Tensor) -> float:
    return float(10 * torch.log10(ref.pow(2).mean() / (ref - out).pow(2).mean()))


# ------------------------------------------------------------------------------------- PTQ


@pytest.mark.parametrize("calibrator", sorted(CALIBRATORS))
def test_ptq_checkpoint_reloads_as_the_quantized_model(fp_ckpt, jpeg_folder, tmp_path, calibrator):
    out = tmp_path / "q" / "q.pt"
    args = [
        "quantize",
        str(fp_ckpt),
        "--out",
        str(out),
        "--calib",
        str(jpeg_folder),
        "--calibrator",
        calibrator,
    ]
    result = runner.invoke(
        APP, [*args, "--calib-split", "all", "--batch-size", "4", "--device", "cpu", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["method"] == "ptq" and report["recipe"]["calibrator"] == calibrator
    assert report["quantization"]["ptq"]["images"] == 8
    assert all(q["amax_min"] > 0 for q in report["quantizers"])
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "q.metrics.csv",
        "q.pt",
    ]  # written atomically, nothing left over

    memory = quantize_checkpoint(
        fp_ckpt, None, recipe=build_recipe(calibrator=calibrator), calib=PtqData(jpeg_folder, split="all",
        batch_size=4), device="cpu",
    )  # fmt: skip
    loaded = load_checkpoint(out)
    assert recipe_of(loaded.model) == memory.recipe and loaded.class_names == ["cat", "dog"]
    fp = load_checkpoint(fp_ckpt).model
    with torch.no_grad():
        for batch in _batches(jpeg_folder):
            q_out = loaded.model(*_args(batch))
            torch.testing.assert_close(q_out, memory.model(*_args(batch)), rtol=0, atol=0)
            f_out = fp(*_args(batch))
            assert not torch.equal(q_out, f_out)
            assert _sqnr(f_out, q_out) > 10  # near the FP model (entropy clips hard on 8 images)
    # The evaluation path (deploy/evaluate) takes the quantized checkpoint like any other.
    factory = lambda q: dataset_for_arch(  # noqa: E731
        ARCH,
        jpeg_folder,
        split_data(jpeg_folder, 0.1).samples("all"),
        train=False,
        policy=QualityPolicy(test_quality=q),
    )
    from_file = evaluate(out, factory, None, batch_size=4, device="cpu")
    in_memory = evaluate(memory.model, factory, None, batch_size=4, device="cpu")
    assert from_file.rows[0].images == 8 and from_file.rows[0].loss == in_memory.rows[0].loss


def test_quantized_file_is_plain_data_and_records_how_it_was_made(fp_ckpt, jpeg_folder, tmp_path):
    out = tmp_path / "q.pt"
    result = quantize_checkpoint(
        fp_ckpt,
        out,
        recipe=build_recipe(bits="w4a4"),
        calib=PtqData(jpeg_folder, num_images=5, batch_size=2, seed=3),
    )
    payload = torch.load(out, weights_only=True)
    extra = payload["extra"]
    assert extra[QUANT_RECIPE_KEY] == PRESETS["w4a4"].to_dict()
    assert extra["train_config"] == FP_TRAIN_CONFIG  # the FP validation split stays
    info = extra["quantization"]
    assert info["method"] == "ptq" and info["source"]["epoch"] == 3
    # The train split of val_fraction 0.25 holds 6 of the 8 images; 5 are drawn from it.
    assert info["ptq"] == {
        "data": str(jpeg_folder), "split": "train", "val_fraction": 0.25, "images": 5, "batch_size": 2, "seed": 3,
    }  # fmt: skip
    loaded = load_checkpoint(out)
    grids = {name: (q.qmin, q.qmax) for name, q in iter_quantizers(loaded.model)}
    assert set(grids.values()) <= {(-7, 7), (-8, 7), (0, 15)} and (0, 15) in grids.values()
    assert grids == {name: (q.qmin, q.qmax) for name, q in iter_quantizers(result.model)}
    # PTQ's run record: one row per quantizer, as `dctq quantize --json` lists them.
    assert result.metrics == tmp_path / "q.metrics.csv"
    rows = read_metrics(result.metrics)
    assert [(r["name"], r["qmin"], r["qmax"]) for r in rows] == [
        (q.name, q.qmin, q.qmax) for q in result.quantizers
    ]


def test_models_load_quantized_checkpoints_without_importing_calibration_first(
    fp_ckpt, jpeg_folder, tmp_path
):
    out = tmp_path / "q.pt"
    quantize_checkpoint(
        fp_ckpt, out, recipe=build_recipe("int8-max"), calib=PtqData(jpeg_folder, split="all")
    )
    code = textwrap.dedent(f"""
        import sys
        import dctq.models
        assert not any(m.startswith("dctq.calibration") for m in sys.modules), "models imported calibration"
        loaded = dctq.models.load_checkpoint({str(out)!r})
        print(sum(type(m).__name__ == "TensorQuantizer" for m in loaded.model.modules()))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == sum(1 for _ in iter_quantizers(load_checkpoint(out).model)) > 0


def test_qabn_and_quantizers_are_rebuilt_in_order(tmp_path):
    torch.manual_seed(0)
    model = apply_qabn(create_model(ARCH, **KWARGS)).eval()
    qmodel = quantize_model(model, QuantRecipe(calibrator="max"))
    y, c = torch.randn(4, 64, 4, 4) * 20, torch.randn(4, 128, 2, 2) * 5
    qt = torch.randint(1, 60, (4, 3, 64)).float()
    calibrate(qmodel, lambda m: m(y, c, qt))
    fp_path = save_checkpoint(
        tmp_path / "fp.pt",
        model,
        arch=ARCH,
        arch_kwargs=KWARGS,
        class_names=[],
        extra={"qabn": {"num_branches": 4}},
    )
    path = save_quantized(tmp_path / "q.pt", qmodel, load_checkpoint(fp_path), extra_info={"method": "ptq"})
    loaded = load_checkpoint(path).model
    with torch.no_grad():
        torch.testing.assert_close(loaded(y, c, qt), qmodel(y, c, qt), rtol=0, atol=0)


def test_save_quantized_refuses_float_and_uncalibrated_models(fp_ckpt, tmp_path):
    fp = load_checkpoint(fp_ckpt)
    with pytest.raises(QuantizationError, match="made by quantize_model"):
        save_quantized(tmp_path / "q.pt", fp.model, fp)
    with pytest.raises(QuantizationError, match="have no range"):
        save_quantized(tmp_path / "q.pt", quantize_model(fp.model), fp)
    with pytest.raises(QuantizationError, match="was quantized with"):
        save_quantized(tmp_path / "q.pt", quantize_model(fp.model), fp, PRESETS["int8-max"])
    assert not (tmp_path / "q.pt").exists()


# ------------------------------------------------------------------------------- zero-shot


TINY_SYNTH = ["--num-synthetic", "8", "--synth-iters", "2", "--synth-batch-size", "8"]
TINY_TUNE = ["--steps-per-epoch", "2", "--batch-size", "4", "--device", "cpu", "--json"]


def test_intraq_quantizes_without_any_image(fp_ckpt, tmp_path, monkeypatch):
    forbid_images(monkeypatch, tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    args = [
        "quantize",
        str(fp_ckpt),
        "--method",
        "intraq",
        "--out",
        "q.pt",
        "--epochs",
        "1",
        "--milestones",
        "1",
        "--bits",
        "w8a8",
    ]
    result = runner.invoke(APP, [*args, *TINY_SYNTH, *TINY_TUNE])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    info = report["quantization"]
    assert info["synthesis"]["method"] == "intraq" and info["synthesis"]["images"] == 8
    assert info["synthesis"]["file"] is None and info["zero_shot"]["epochs"] == 1
    assert info["zero_shot"]["milestones"] == [1]  # as given, not IntraQ's scaled to one epoch
    assert info["fine_tune"]["epoch"] == 1 and math.isfinite(info["fine_tune"]["loss"])
    assert sorted(p.name for p in work.iterdir()) == ["q.metrics.csv", "q.pt"]
    (epoch,) = read_metrics(work / "q.metrics.csv")  # the run record: one row per fine-tuning epoch
    assert epoch["epoch"] == 1 and epoch["agreement"] == info["fine_tune"]["agreement"]
    loaded = load_checkpoint(work / "q.pt")
    assert loaded.extra["quantization"] == info
    ranges = {name: (float(q.amax.min()), float(q.amax.max())) for name, q in iter_quantizers(loaded.model)}
    assert ranges == {q["name"]: (q["amax_min"], q["amax_max"]) for q in report["quantizers"]}


def _bnstats_file(fp_ckpt, path, monkeypatch) -> None:
    """A tiny BN-statistics synthetic set of fp_ckpt at `path`; then every image read fails the test."""
    synthesize_checkpoint(
        fp_ckpt, SynthConfig(num=8, batch_size=8, iterations=2, method="bnstats", device="cpu"), path
    )
    forbid_images(monkeypatch, path.parent)


def test_bnstats_reuses_a_synthetic_file_and_checks_its_method(fp_ckpt, tmp_path, monkeypatch):
    synth = tmp_path / "synth.pt"
    _bnstats_file(fp_ckpt, synth, monkeypatch)
    out = tmp_path / "q.pt"
    base = [
        "quantize",
        str(fp_ckpt),
        "--out",
        str(out),
        "--synthetic",
        str(synth),
        "--epochs",
        "0",
        "--device",
        "cpu",
    ]
    result = runner.invoke(APP, [*base, "--method", "bnstats", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)["quantization"]
    assert info["synthesis"]["file"] == str(synth) and info["synthesis"]["images"] == 8
    assert "fine_tune" not in info and recipe_of(load_checkpoint(out).model) == PRESETS["int8"]
    out.unlink()
    wrong = runner.invoke(APP, [*base, "--method", "intraq"])
    assert wrong.exit_code == 1 and "--method bnstats" in wrong.output and not out.exists()
    other = runner.invoke(APP, [*base, "--method", "bnstats", "--num-synthetic", "16"])
    assert other.exit_code == 1 and "num: file 8 vs now 16" in other.output and not out.exists()


def test_intraq_calibrates_on_a_bnstats_file_when_asked(fp_ckpt, tmp_path, monkeypatch):
    calib = tmp_path / "bns.pt"
    _bnstats_file(fp_ckpt, calib, monkeypatch)
    out = tmp_path / "q.pt"
    base = ["quantize", str(fp_ckpt), "--method", "intraq", "--out", str(out), "--device", "cpu"]
    small = ["--num-synthetic", "8", "--synth-iters", "2", "--synth-batch-size", "8", "--epochs", "0"]
    result = runner.invoke(APP, [*base, *small, "--calib-synthetic", str(calib), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)["quantization"]
    assert info["calib_synthesis"]["method"] == "bnstats" and info["calib_synthesis"]["file"] == str(calib)
    assert info["synthesis"]["method"] == "intraq"
    # Calibrated on the bnstats images: the activation ranges are those of PTQ on that file.
    got = load_checkpoint(out).model.state_dict()
    reference = ptq(load_checkpoint(fp_ckpt).model, PRESETS["int8"], load_synthetic(calib).batches(256))
    amax = {k: v for k, v in reference.state_dict().items() if k.endswith("input_quantizer.amax")}
    assert amax and all(torch.equal(got[k], v) for k, v in amax.items())
    out.unlink()
    missing = runner.invoke(APP, [*base, *small, "--calib-synthetic", str(tmp_path / "none.pt")])
    assert missing.exit_code == 1 and "dctq synthesize" in missing.output and not out.exists()


# ---------------------------------------------------------------------------- bad usage


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "give --calib"),
        (["--method", "intraq", "--calib", "{data}"], "reads no real image"),
        (["--calib", "{data}", "--epochs", "2"], "--epochs"),
        (["--calib", "{data}", "--calib-synthetic", "{tmp}/s.pt"], "--calib-synthetic"),
        (["--calib", "{data}", "--milestones", "3"], "--milestones"),
        (["--method", "bnstats", "--milestones", "2,x"], "--milestones"),
        (["--method", "bnstats", "--milestones", "0"], "milestones are epochs >= 1"),
        (["--method", "bnstats", "--num-images", "4"], "--num-images"),
        (["--calib", "{data}", "--bits", "w9a9"], "2..8"),
        (["--calib", "{data}", "--recipe", "int9"], "unknown recipe"),
        (["--calib", "{data}", "--calibrator", "maxx"], "unknown calibrator"),
        (["--method", "gptq"], "--method must be one of"),
        (["--calib", "{tmp}/nowhere"], "nowhere"),
    ],
)
def test_bad_usage_exits_1_with_a_clear_message(fp_ckpt, jpeg_folder, tmp_path, extra, message):
    out = tmp_path / "q.pt"
    args = [a.format(data=jpeg_folder, tmp=tmp_path) for a in extra]
    result = runner.invoke(APP, ["quantize", str(fp_ckpt), "--out", str(out), *args])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # no other exception escaped the command
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ") and message in line
    assert not out.exists()


@pytest.mark.parametrize(
    ("flags", "method", "calib", "plan"),
    [
        ([], "ptq", False, None),
        (["--method", "gptq"], "gptq", False, None),
        (["--method", "intraq", "--calib", "{data}"], "intraq", True, None),
        (["--method", "bnstats", "--calib", "{data}", "--epochs", "2"], "bnstats", True, None),
        (["--calib", "{data}", "--epochs", "2"], "ptq", True, {"fine_tune": {"epochs": 2}}),
        (["--calib", "{data}", "--milestones", "3"], "ptq", True, {"fine_tune": {"milestones": (3,)}}),
        (
            ["--calib", "{data}", "--calib-synthetic", "{tmp}/c.pt", "--synthetic", "{tmp}/s.pt"],
            "ptq",
            True,
            {"synthetic": "{tmp}/s.pt", "calib_synthetic": "{tmp}/c.pt"},
        ),
        (
            ["--calib", "{data}", "--num-synthetic", "16", "--steps-per-epoch", "5", "--epochs", "4"],
            "ptq",
            True,
            {"synth": {"num": 16}, "fine_tune": {"steps_per_epoch": 5, "epochs": 4}},
        ),
        (["--epochs", "3"], "ptq", False, {"fine_tune": {"epochs": 3}}),
    ],
)
def test_cli_and_library_refuse_the_same_combinations_with_the_same_message(
    fp_ckpt, jpeg_folder, tmp_path, flags, method, calib, plan
):
    """One set of option rules (workflow.plan.check_plan): the CLI checks the flags it was given, the
    library the flags its arguments stand for, and both say the same."""
    fill = {"data": jpeg_folder, "tmp": tmp_path}
    out = tmp_path / "q.pt"
    result = runner.invoke(
        APP, ["quantize", str(fp_ckpt), "--out", str(out), *(a.format(**fill) for a in flags)]
    )
    assert result.exit_code == 1, result.output
    zero_shot = None
    if plan is not None:
        parts = {k: v.format(**fill) if isinstance(v, str) else v for k, v in plan.items()}
        tune = parts.pop("fine_tune", {})
        base = ZeroShotConfig().with_epochs(tune.pop("epochs")) if "epochs" in tune else ZeroShotConfig()
        zero_shot = ZeroShotPlan(
            synth=SynthConfig(**parts.pop("synth")) if "synth" in parts else None,
            fine_tune=dataclasses.replace(base, **tune),
            **parts,
        )
    with pytest.raises(QuantizationError) as library:
        quantize_checkpoint(
            fp_ckpt,
            out,
            method=method,
            calib=PtqData(jpeg_folder) if calib else None,
            zero_shot=zero_shot,
        )
    assert f"error: {library.value}" in " ".join(result.output.split()) and not out.exists()


def test_the_plan_types_are_named_when_a_caller_passes_old_style_values(fp_ckpt, jpeg_folder, tmp_path):
    with pytest.raises(QuantizationError, match=r"calib takes PtqData\(source"):
        quantize_checkpoint(fp_ckpt, tmp_path / "q.pt", calib=jpeg_folder)
    with pytest.raises(QuantizationError, match=r"zero_shot takes ZeroShotPlan\(synthetic"):
        quantize_checkpoint(fp_ckpt, tmp_path / "q.pt", method="intraq", zero_shot=ZeroShotConfig())
    plan = ZeroShotPlan(synth=SynthConfig(method="intraq", num=2, batch_size=2, iterations=1))
    with pytest.raises(QuantizationError, match="SynthConfig\\(method='bnstats'"):
        quantize_checkpoint(fp_ckpt, tmp_path / "q.pt", method="bnstats", zero_shot=plan)
    assert not (tmp_path / "q.pt").exists()


def test_bad_checkpoints_exit_1(fp_ckpt, jpeg_folder, tmp_path):
    missing = runner.invoke(
        APP,
        ["quantize", str(tmp_path / "none.pt"), "--out", str(tmp_path / "q.pt"), "--calib", str(jpeg_folder)],
    )
    assert missing.exit_code == 1 and "not found" in missing.output
    same = runner.invoke(APP, ["quantize", str(fp_ckpt), "--out", str(fp_ckpt), "--calib", str(jpeg_folder)])
    assert same.exit_code == 1 and "overwrite" in same.output
    q = tmp_path / "q.pt"
    assert (
        runner.invoke(APP, ["quantize", str(fp_ckpt), "--out", str(q), "--calib", str(jpeg_folder)]).exit_code
        == 0
    )
    again = runner.invoke(
        APP, ["quantize", str(q), "--out", str(tmp_path / "qq.pt"), "--calib", str(jpeg_folder)]
    )
    assert again.exit_code == 1 and "already quantized" in again.output


def test_bits_and_recipe_options():
    assert parse_bits("W5A5") == (5, 5) and parse_bits("w8a4") == (8, 4)
    for bad in ("8", "w8", "wxa8", "w1a1"):
        with pytest.raises(QuantizationError, match="--bits"):
            parse_bits(bad)
    assert build_recipe() == PRESETS["int8"]
    assert build_recipe(bits="w3a3") == PRESETS["w3a3"]
    w5 = build_recipe(bits="w5a5")
    assert (w5.weight_bits, w5.act_bits, w5.act_unsigned, w5.calibrator) == (5, 5, True, "mse")
    back_to_8 = build_recipe("w4a4", bits="w8a8")
    assert (back_to_8.weight_bits, back_to_8.act_unsigned, back_to_8.exportable) == (8, False, True)
    assert build_recipe("int8-percentile").calibrator_args == (("percentile", 99.99),)
    switched = build_recipe("int8-percentile", calibrator="max")
    assert switched.calibrator == "max" and switched.calibrator_args == ()
