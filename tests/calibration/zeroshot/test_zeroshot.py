"""Zero-shot quantization: calibration + KD fine-tuning on synthetic data only; DDP under torchrun."""

from __future__ import annotations

import dataclasses
import json
import textwrap

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from helpers import TINY, forbid_images, run_torchrun, tiny_dct_teacher
from torch import nn

from dctq.calibration.distributed import DistEnv
from dctq.calibration.ptq import model_args, ptq
from dctq.calibration.quant.model import fold_quantized_bn, iter_quantizers, quantize_model, recipe_of
from dctq.calibration.quant.modules import QuantConv2d, QuantLinear
from dctq.calibration.quant.quantizer import QuantState
from dctq.calibration.quant.recipe import QuantRecipe, get_recipe
from dctq.calibration.zeroshot.config import SynthConfig, ZeroShotConfig, ZeroShotEpochEnd, ZeroShotStep
from dctq.calibration.zeroshot.data import load_synthetic
from dctq.calibration.zeroshot.distill import (
    distill_on_synthetic,
    kd_loss,
    step_indices,
    zero_shot_quantize,
)
from dctq.calibration.zeroshot.synthesize import synthesize
from dctq.common.errors import QuantizationError
from dctq.jpeg.geometry import hflip
from dctq.jpeg.transforms import random_flip_pad_crop
from dctq.models import example_inputs
from dctq.models.registry import create_model


@pytest.fixture(scope="module")
def synthetic(dct_teacher):
    return synthesize(dct_teacher, SynthConfig(num=16, batch_size=8, iterations=5, device="cpu"))


def _zs(**kw) -> ZeroShotConfig:
    base = {"epochs": 2, "steps_per_epoch": 3, "batch_size": 8, "device": "cpu", "log_every": 1}
    return ZeroShotConfig(**{**base, **kw})


def _sqnr(ref: torch.Tensor, out: torch.Tensor) -> float:
    return float(10 * torch.log10(ref.pow(2).mean() / (ref - out).pow(2).mean()))


def test_zero_shot_runs_end_to_end_without_any_data(tmp_path, monkeypatch):
    forbid_images(monkeypatch, tmp_path)
    monkeypatch.chdir(tmp_path)
    teacher = tiny_dct_teacher()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    path = tmp_path / "synth.pt"
    synthesize(teacher, SynthConfig(num=16, batch_size=8, iterations=5, device="cpu"), path)
    data = load_synthetic(path)
    recipe = QuantRecipe(calibrator="max")
    events = []
    student = distill_on_synthetic(teacher, recipe, data, _zs(), progress=events.append)

    assert recipe_of(student) == recipe and not student.training
    assert all(q.state is QuantState.QUANTIZING for _, q in iter_quantizers(student))
    assert [e.epoch for e in events if isinstance(e, ZeroShotEpochEnd)] == [1, 2]
    assert len([e for e in events if isinstance(e, ZeroShotStep)]) == 6
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), k  # the FP teacher is untouched
    batch = data.batch(slice(0, 16))
    args = (batch["y"].float(), batch["cbcr"].float(), batch["qt"])
    with torch.no_grad():
        assert _sqnr(teacher(*args), student(*args)) > 15
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synth.pt"]


def test_epochs_zero_is_ptq_on_the_synthetic_set(dct_teacher, synthetic):
    recipe = get_recipe("int8-max")
    calibrated = distill_on_synthetic(dct_teacher, recipe, synthetic, _zs(epochs=0, batch_size=4))
    reference = ptq(dct_teacher, recipe, synthetic.batches(4))
    ref = reference.state_dict()
    for k, v in calibrated.state_dict().items():
        assert torch.equal(v, ref[k]), k


def test_tuned_unfolded_then_folded_into_the_recipes_form(dct_teacher, synthetic):
    """IntraQ tunes BN's affine with the statistics frozen; the result is folded afterwards, so it has
    exactly the layout (and recipe) of a folding quantize_model and saves/exports like PTQ output."""
    recipe = get_recipe("int8-max")
    events = []
    student = distill_on_synthetic(
        dct_teacher, recipe, synthetic, _zs(epochs=1, steps_per_epoch=4), progress=events.append
    )
    assert not any(isinstance(m, nn.BatchNorm2d) for m in student.modules())
    assert recipe_of(student) == recipe
    assert set(student.state_dict()) == set(quantize_model(dct_teacher, recipe).state_dict())
    # BN's affine did train: the student differs from the calibrated-only model.
    calibrated = distill_on_synthetic(dct_teacher, recipe, synthetic, _zs(epochs=0))
    x = model_args(synthetic.batch(list(range(8))), torch.device("cpu"))
    with torch.no_grad():
        assert not torch.allclose(student(*x), calibrated(*x))
    folded_tuning = distill_on_synthetic(dct_teacher, recipe, synthetic, _zs(epochs=1, tune_unfolded=False))
    assert set(folded_tuning.state_dict()) == set(student.state_dict())


def test_fold_quantized_bn_keeps_the_function():
    torch.manual_seed(0)
    model = create_model("dct_cifar_deconv", num_classes=3, widths=[8, 16], depths=[1, 1]).eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_var.uniform_(0.5, 2.0)
            m.running_mean.uniform_(-0.5, 0.5)
            m.weight.data.uniform_(-1.0, 1.5)  # negative scales flip weight signs: grids must follow
    recipe = get_recipe("int8-max")
    unfolded = ptq(
        model,
        dataclasses.replace(recipe, fold_bn=False),
        [example_inputs(model, 16, seed=s) for s in range(3)],
    )
    assert sum(isinstance(m, nn.BatchNorm2d) for m in unfolded.modules()) == 6
    x = example_inputs(model, 64, seed=9)
    with torch.no_grad():
        before = unfolded(*x)
        folded = fold_quantized_bn(unfolded, recipe)
        after = folded(*x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert _sqnr(before, after) > 60.0


def test_ranges_can_come_from_another_synthetic_set(dct_teacher, synthetic):
    """calib_synthetic: activation ranges from that set (IntraQ's code: generator images), so the
    calibrated model equals PTQ on it, whatever set the (here: absent) fine-tuning would use."""
    recipe = get_recipe("int8-max")
    other = synthesize(dct_teacher, SynthConfig(num=8, batch_size=8, iterations=2, method="bnstats", seed=3))
    calibrated = distill_on_synthetic(
        dct_teacher, recipe, synthetic, _zs(epochs=0, batch_size=4), calib_synthetic=other
    )
    reference = ptq(dct_teacher, recipe, other.batches(4)).state_dict()
    own = distill_on_synthetic(dct_teacher, recipe, synthetic, _zs(epochs=0, batch_size=4)).state_dict()
    amax = [k for k in reference if k.endswith("input_quantizer.amax")]
    assert amax and all(torch.equal(calibrated.state_dict()[k], reference[k]) for k in amax)
    assert any(not torch.equal(own[k], reference[k]) for k in amax)
    with pytest.raises(QuantizationError, match="classes"):
        bad = create_model("dct_cifar_upsampling", num_classes=5, **TINY)
        distill_on_synthetic(
            dct_teacher,
            None,
            synthetic,
            _zs(),
            calib_synthetic=synthesize(bad.eval(), SynthConfig(num=2, batch_size=2, iterations=1)),
        )


def test_fine_tuning_lowers_distillation_loss_and_weight_ranges_follow_weights(dct_teacher, synthetic):
    events = []
    config = _zs(epochs=1, steps_per_epoch=40, lr=0.01, augment=False, log_every=1)
    student = distill_on_synthetic(dct_teacher, get_recipe("w4a4"), synthetic, config, progress=events.append)
    kd = [e.kd for e in events if isinstance(e, ZeroShotStep)]
    assert len(kd) == 40
    assert sum(kd[-5:]) < 0.5 * sum(kd[:5])
    for module in student.modules():
        if isinstance(module, QuantConv2d | QuantLinear):
            w = module.weight.detach()
            per_channel = w.abs().reshape(w.shape[0], -1).amax(dim=1)
            torch.testing.assert_close(module.weight_quantizer.amax, per_channel)


def test_kd_loss_matches_its_formula():
    config = ZeroShotConfig()
    s = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    t = torch.tensor([[2.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    labels = torch.tensor([1, 2])
    total, kd, ce = kd_loss(s, s, labels, config)
    assert float(kd) == pytest.approx(0.0, abs=1e-7)
    assert float(total) == pytest.approx(float(ce), abs=1e-3)  # 8000 x float32 rounding of a zero KL
    total, kd, ce = kd_loss(s, t, labels, config)
    p_t, p_s = torch.softmax(t / 20, 1), torch.softmax(s / 20, 1)
    expected_kd = float((p_t * (p_t.log() - p_s.log())).sum() / 2)
    assert float(kd) == pytest.approx(expected_kd, rel=1e-4)
    assert float(total) == pytest.approx(20 * 400 * expected_kd + float(F.cross_entropy(s, labels)), rel=1e-4)


def test_dct_augmentation_flips_and_shifts_by_whole_mcus():
    gen = torch.Generator().manual_seed(0)
    y = torch.randint(-50, 50, (6, 64, 4, 4), dtype=torch.int16)
    c = torch.randint(-50, 50, (6, 128, 2, 2), dtype=torch.int16)
    y_f, c_f = random_flip_pad_crop(y, c, gen, flip_p=1.0, pad_mcus=0)
    ref_y, ref_c = hflip(y, c)
    assert torch.equal(y_f, ref_y) and torch.equal(c_f, ref_c)
    y_s, c_s = random_flip_pad_crop(y, c, gen, flip_p=0.0, pad_mcus=1)
    assert y_s.shape == y.shape and c_s.shape == c.shape and y_s.dtype == torch.int16
    padded_y = F.pad(y, (2, 2, 2, 2))
    padded_c = F.pad(c, (1, 1, 1, 1))
    shifts = set()
    for i in range(6):
        found = [
            (t, s)
            for t in range(3)
            for s in range(3)
            if torch.equal(y_s[i], padded_y[i, :, 2 * t : 2 * t + 4, 2 * s : 2 * s + 4])
            and torch.equal(c_s[i], padded_c[i, :, t : t + 2, s : s + 2])
        ]
        assert found, i
        shifts.add(found[0])
    assert len(shifts) > 1


def test_step_indices_split_each_global_batch_between_ranks():
    parts = [step_indices(10, 3, steps=4, batch=3, env=DistEnv(r, 2, r), seed=0) for r in range(2)]
    assert parts[0].shape == (4, 3)
    both = torch.cat(parts, dim=1)
    stream = both.flatten()
    # Whole passes over the 10 samples: the first 10 indices are a permutation, and so on.
    assert sorted(stream[:10].tolist()) == list(range(10)) and sorted(stream[10:20].tolist()) == list(
        range(10)
    )
    assert torch.equal(step_indices(10, 3, 4, 6, DistEnv(), 0).flatten(), stream)
    assert not torch.equal(step_indices(10, 4, 4, 6, DistEnv(), 0), step_indices(10, 3, 4, 6, DistEnv(), 0))


def test_config_schedule_and_validation():
    config = ZeroShotConfig()
    assert config.epochs == 147 and config.milestones == (16, 36, 56)
    short = config.with_epochs(20)
    assert short.milestones == (2, 5, 8)
    assert [short.lr_at(e) for e in (0, 2, 5, 8)] == pytest.approx([1e-4, 1e-5, 1e-6, 1e-7])
    with pytest.raises(QuantizationError, match="--batch-size"):
        ZeroShotConfig(batch_size=0)


def test_synthetic_set_of_another_model_is_refused(synthetic):
    rgb = create_model("resnet20", num_classes=3)
    with pytest.raises(QuantizationError, match="dct samples"):
        distill_on_synthetic(rgb, None, synthetic, _zs())
    other = create_model("dct_cifar_upsampling", num_classes=5, **TINY)
    with pytest.raises(QuantizationError, match="3 classes"):
        distill_on_synthetic(other, None, synthetic, _zs())


def test_zero_shot_quantize_given_a_synthetic_set_names_distill_on_synthetic(dct_teacher, synthetic):
    """zero_shot_quantize used to take the synthetic set (now distill_on_synthetic's job): an old call
    fails with the new name instead of a TypeError deep in synthesis."""
    with pytest.raises(
        QuantizationError, match=r"distill_on_synthetic\(teacher, recipe, synthetic, config\)"
    ):
        zero_shot_quantize(dct_teacher, None, synthetic, _zs())


def test_rgb_pipeline_bnstats_baseline(tmp_path):
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=3).eval()
    synth = SynthConfig(num=4, batch_size=4, iterations=2, method="bnstats", device="cpu")
    student, data = zero_shot_quantize(
        model,
        get_recipe("int8-max"),
        synth,
        _zs(epochs=1, steps_per_epoch=1, batch_size=4),
        synthetic_out=tmp_path / "s.pt",
    )
    assert data.kind == "rgb" and load_synthetic(tmp_path / "s.pt").config["method"] == "bnstats"
    with torch.no_grad():
        out = student(data.tensors["x"], data.tensors["qt"])
    assert out.shape == (4, 3) and torch.isfinite(out).all()


# ------------------------------------------------------------------------------------- torchrun

WORKER = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    import torch
    import importlib
    synth_mod = importlib.import_module("dctq.calibration.zeroshot.synthesize")
    from dctq.calibration.distributed import DistEnv
    from dctq.calibration.quant.recipe import get_recipe
    from dctq.calibration.zeroshot.config import SynthConfig
    from dctq.calibration.zeroshot.synthesize import synthesize
    from dctq.calibration.zeroshot.distill import distill_on_synthetic
    from dctq.calibration.zeroshot.config import ZeroShotConfig

    from helpers import tiny_dct_teacher

    out, rank = Path(sys.argv[1]), int(os.environ["RANK"])
    torch.distributed.init_process_group("gloo")
    model = tiny_dct_teacher()
    made = []
    original = synth_mod._make_batch

    def recording(job, b):  # which rank makes which batch
        made.append(b)
        return original(job, b)

    synth_mod._make_batch = recording
    data = synthesize(model, SynthConfig(num=10, batch_size=2, iterations=3, device="cpu"), out / "dist.pt")
    synth_mod._make_batch = original
    torch.save(data.tensors, out / f"tensors-rank{rank}.pt")
    if rank == 0:  # the same job in one process, with the centre rounds two processes imply
        single = SynthConfig(num=10, batch_size=2, iterations=3, device="cpu", centre_every=2)
        synthesize(model, single, out / "single.pt", env=DistEnv())
    config = ZeroShotConfig(epochs=1, steps_per_epoch=2, batch_size=2, lr=0.01, device="cpu")
    student = distill_on_synthetic(model, get_recipe("int8-max"), data, config)
    torch.save(student.state_dict(), out / f"student-rank{rank}.pt")
    (out / f"made-rank{rank}.json").write_text(json.dumps(made))
    torch.distributed.destroy_process_group()
    """
)


@pytest.mark.dist
@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo")
def test_two_cpu_processes_synthesize_disjoint_batches_and_train_one_model(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    run_torchrun(script, str(tmp_path))

    # 5 batches over 2 ranks: rank r makes batches r, r+2, ...
    assert json.loads((tmp_path / "made-rank0.json").read_text()) == [0, 2, 4]
    assert json.loads((tmp_path / "made-rank1.json").read_text()) == [1, 3]
    merged, single = load_synthetic(tmp_path / "dist.pt"), load_synthetic(tmp_path / "single.pt")
    assert merged.config == single.config and merged.config["centre_every"] == 2
    assert merged.batch_losses == single.batch_losses
    rank0 = torch.load(tmp_path / "tensors-rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "tensors-rank1.pt", weights_only=True)
    for k, v in merged.tensors.items():
        assert torch.equal(v, single.tensors[k]) and torch.equal(v, rank0[k]) and torch.equal(v, rank1[k]), k
    y = merged.tensors["y"].reshape(5, -1)
    assert all(not torch.equal(y[a], y[b]) for a in range(5) for b in range(a + 1, 5))

    s0 = torch.load(tmp_path / "student-rank0.pt", weights_only=True)
    s1 = torch.load(tmp_path / "student-rank1.pt", weights_only=True)
    calibrated = distill_on_synthetic(
        tiny_dct_teacher(), get_recipe("int8-max"), merged, _zs(epochs=0, batch_size=2)
    ).state_dict()
    assert s0.keys() == s1.keys() == calibrated.keys()
    for k in s0:
        assert torch.equal(s0[k], s1[k]), k
    assert not torch.equal(s0["fc.weight"], calibrated["fc.weight"])  # DDP steps moved the weights


def test_the_no_image_guard_catches_every_way_to_read_one(tmp_path, monkeypatch, jpeg_folder):
    """The guard of the zero-shot tests patched read_jpeg in its module only: JpegFolder, inspect_jpeg and
    the GPU input path, which imported it by name, still read a real JPEG with the guard on."""
    from dctq.deploy.artifact import describe_model
    from dctq.deploy.predict import read_input
    from dctq.deploy.profiling.gpu_input import DctInput
    from dctq.jpeg.dataset import JpegFolder
    from dctq.jpeg.inspect import inspect_jpeg
    from dctq.jpeg.reader import read_jpeg  # bound before the guard, as a module importing it by name
    from dctq.jpeg.rgb import RgbJpegFolder
    from dctq.models import create_model

    image = sorted(jpeg_folder.rglob("*.jpg"))[0]
    meta = describe_model(create_model("dct_cifar_upsampling", num_classes=2, **TINY))
    reads = {
        "read_jpeg by name": lambda: read_jpeg(image),
        "JpegFolder": lambda: JpegFolder(jpeg_folder, input_size=32, train=False)[0],
        "RgbJpegFolder": lambda: RgbJpegFolder(jpeg_folder, input_size=32, train=False)[0],
        "inspect_jpeg": lambda: inspect_jpeg(image),
        "predict's reader": lambda: read_input(image, meta),
        "GPU input path": lambda: list(DctInput(1, (32, 32), device="cpu").batches([image])),
    }
    for read in reads.values():
        read()  # each really reads an image without the guard
    forbid_images(monkeypatch, tmp_path)
    for what, read in reads.items():
        with pytest.raises(AssertionError, match="read an image"):
            read()
            pytest.fail(f"{what} read an image past the guard")
