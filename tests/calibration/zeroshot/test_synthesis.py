"""IntraQ synthesis: losses, the JPEG-coefficient parametrization, the loop, its file, resume, grid, CLI."""

from __future__ import annotations

import dataclasses
import io
import json

import numpy as np
import pytest
import torch
from helpers import TINY, smooth_images, tiny_dct_teacher
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from dctq.calibration.workflow.data import check_same_options, reused_synthetic
from dctq.calibration.zeroshot.config import SynthBatchEnd, SynthConfig, SynthStep
from dctq.calibration.zeroshot.data import load_synthetic
from dctq.calibration.zeroshot.grid import decode_samples, synthetic_grid_png
from dctq.calibration.zeroshot.images import (
    coefficients_from_z,
    draw_qualities,
    pixels_to_z,
    z_to_pixels,
)
from dctq.calibration.zeroshot.losses import (
    BnStatsHooks,
    CentreBank,
    draw_sil_targets,
    mdc_loss,
    sil_loss,
)
from dctq.calibration.zeroshot.synthesize import synthesize
from dctq.cli.main import app
from dctq.common.errors import DataError, QuantizationError
from dctq.jpeg.dct import rgb_to_coefficients
from dctq.jpeg.quality import ijg_qt
from dctq.jpeg.reader import read_jpeg
from dctq.jpeg.transforms import draw_crop_boxes, resized_crop_flip
from dctq.models.checkpoint import save_checkpoint
from dctq.models.registry import create_model


def _cfg(**kw) -> SynthConfig:
    base = {"num": 8, "batch_size": 4, "iterations": 4, "device": "cpu", "log_every": 1}
    return SynthConfig(**{**base, **kw})


# ---------------------------------------------------------------------------------------- losses


def test_bns_is_zero_when_batch_statistics_equal_running_ones_and_matches_hand_value():
    torch.manual_seed(0)
    x = torch.randn(6, 5, 4, 4) * 3 + 1
    bn = nn.BatchNorm2d(5).eval()
    bn.running_mean.copy_(x.mean(dim=(0, 2, 3)))
    bn.running_var.copy_(x.var(dim=(0, 2, 3), unbiased=False))
    model = nn.Sequential(bn)
    with BnStatsHooks(model) as hooks:
        model(x)
        assert float(hooks.loss()) == pytest.approx(0.0, abs=1e-10)
        # Every channel's mean off by 0.5 and variance by exactly 2: 0.25 + 4.
        model(x + 0.5)
        bn.running_var.sub_(2.0)
        model(x)
        terms = hooks.terms
        assert float(terms[0]) == pytest.approx(0.25, rel=1e-5)
        assert float(terms[1]) == pytest.approx(4.0, rel=1e-5)
        assert float(hooks.loss()) == pytest.approx((0.25 + 4.0) / 2, rel=1e-5)
    with pytest.raises(QuantizationError, match="ran none"):
        BnStatsHooks(model).loss()


def test_bns_hooks_skip_prefixes_and_need_a_batchnorm():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.Sequential(nn.BatchNorm2d(4)))
    assert BnStatsHooks(model).layers == ["1", "2.0"]
    assert BnStatsHooks(model, ("2.",)).layers == ["1"]
    with pytest.raises(QuantizationError, match="no BatchNorm2d"):
        BnStatsHooks(nn.Sequential(nn.Conv2d(3, 4, 1)))


def test_mdc_hinge_on_hand_made_features():
    centres = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    has = torch.tensor([True, False])
    # class 0: cosine distances 0 (below d_lo), 1 (above d_up), 1 - 1/sqrt(2) (inside); class 1: no centre.
    feats = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0], [5.0, 5.0]], requires_grad=True)
    labels = torch.tensor([0, 0, 0, 1])
    loss = mdc_loss(feats, labels, centres, has, d_lo=0.05, d_up=0.8)
    assert float(loss.detach()) == pytest.approx((0.05 + 0.2 + 0.0) / (3 + 1e-6), rel=1e-6)
    loss.backward()
    assert feats.grad[3].abs().sum() == 0 and feats.grad[2].abs().sum() == 0  # masked / inside the band
    assert feats.grad[1].abs().sum() > 0
    none = mdc_loss(feats, labels, centres, torch.zeros(2, dtype=torch.bool), 0.05, 0.8)
    assert float(none.detach()) == 0.0


def test_sil_penalises_only_the_true_class_probability():
    labels = torch.tensor([0, 2])
    targets = torch.tensor([1.0, 0.9])
    a = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    # Same true-class probabilities, the rest of the mass spread differently.
    b = torch.tensor([[2.0, 0.5, -0.6], [0.3, -0.4, 1.0]])
    b[1, 2] = torch.log(
        torch.exp(b[1, :2]).sum() * torch.softmax(a[1], 0)[2] / (1 - torch.softmax(a[1], 0)[2])
    )
    b[0, 0] = torch.log(
        torch.exp(b[0, 1:]).sum() * torch.softmax(a[0], 0)[0] / (1 - torch.softmax(a[0], 0)[0])
    )
    p = torch.softmax(a, 1)
    expected = ((p[0, 0] - 1.0) ** 2 + (p[1, 2] - 0.9) ** 2) / 2
    assert float(sil_loss(a, labels, targets)) == pytest.approx(float(expected), rel=1e-6)
    assert float(sil_loss(b, labels, targets)) == pytest.approx(float(expected), rel=1e-5)


def test_sil_targets_are_half_hard_and_otherwise_in_eps_to_one():
    t = draw_sil_targets(4000, 0.95, torch.Generator().manual_seed(0))
    hard = t == 1.0
    assert 0.45 < float(hard.float().mean()) < 0.55
    assert float(t[~hard].min()) >= 0.95 and float(t[~hard].max()) < 1.0


def test_centre_bank_commits_per_round():
    bank = CentreBank(2, round_size=2)
    assert not bank.centres(3)[1].any()
    bank.add_batch(0, torch.tensor([[2.0, 0, 0], [0, 0, 0]], dtype=torch.float64), torch.tensor([2, 0]))
    assert not bank.centres(3)[1].any()  # round not finished
    bank.add_batch(1, torch.tensor([[0, 2.0, 0], [0, 0, 4.0]], dtype=torch.float64), torch.tensor([2, 1]))
    centres, has = bank.centres(3)
    assert has.tolist() == [True, True]
    assert centres.tolist() == [[0.5, 0.5, 0.0], [0.0, 0.0, 4.0]]


# --------------------------------------------------------------------------------- parametrization


def test_dct_parametrization_gives_jpeg_integers_on_the_420_grid_with_ijg_tables():
    gen = torch.Generator().manual_seed(3)
    quality, qt = draw_qualities(5, 50, 95, gen)
    assert quality.min() >= 50 and quality.max() <= 95
    assert torch.equal(qt, ijg_qt(quality.tolist()))
    z = pixels_to_z(smooth_images(5, 32, seed=2))
    y, cbcr = coefficients_from_z(z, qt)
    assert y.shape == (5, 64, 4, 4) and cbcr.shape == (5, 128, 2, 2)
    assert torch.equal(y, y.round()) and torch.equal(cbcr, cbcr.round())
    # What a real encoder writes for the same pixels (libjpeg's integer DCT differs by rounding only).
    for i in range(5):
        pixels = np.rint(z_to_pixels(z[i : i + 1])[0].permute(1, 2, 0).numpy()).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="JPEG", quality=int(quality[i]), subsampling=2)
        ref = read_jpeg(buf.getvalue())
        assert np.array_equal(ref.qt.astype(np.float32), qt[i].numpy())
        diff_y = np.abs(ref.y.astype(np.int32) - y[i].numpy().astype(np.int32))
        diff_c = np.abs(ref.cbcr.astype(np.int32) - cbcr[i].numpy().astype(np.int32))
        assert diff_y.max() <= 1 and diff_c.max() <= 1
        assert (diff_y == 0).mean() > 0.9 and (diff_c == 0).mean() > 0.9


def test_straight_through_gradient_reaches_the_pixels():
    gen = torch.Generator().manual_seed(0)
    _, qt = draw_qualities(2, 60, 60, gen)
    z = torch.randn(2, 3, 32, 32, generator=gen, requires_grad=True)
    wy, wc = torch.randn(2, 64, 4, 4, generator=gen), torch.randn(2, 128, 2, 2, generator=gen)
    y, cbcr = coefficients_from_z(z, qt)
    ((y * wy).sum() + (cbcr * wc).sum()).backward()
    z_ref = z.detach().clone().requires_grad_(True)
    y0, c0 = rgb_to_coefficients(z_to_pixels(z_ref))
    ((y0 / qt[:, 0, :, None, None] * wy).sum() + (c0 / qt[:, 1:].reshape(2, 128, 1, 1) * wc).sum()).backward()
    assert z.grad is not None and float(z.grad.abs().min()) > 0
    torch.testing.assert_close(z.grad, z_ref.grad)  # rounding is invisible to the gradient


def test_resized_crop_identity_flip_and_box_ranges():
    x = torch.randn(3, 3, 32, 32)
    full = torch.tensor([[0.0, 0.0, 32.0, 32.0]] * 3)
    torch.testing.assert_close(
        resized_crop_flip(x, full, torch.zeros(3, dtype=torch.bool)), x, atol=1e-5, rtol=0
    )
    torch.testing.assert_close(
        resized_crop_flip(x, full, torch.ones(3, dtype=torch.bool)), x.flip(-1), atol=1e-5, rtol=0
    )
    # The left half stretched to full width: every second output column sits between two inputs.
    half = torch.tensor([[0.0, 0.0, 32.0, 16.0]] * 3)
    out = resized_crop_flip(x, half, torch.zeros(3, dtype=torch.bool))
    torch.testing.assert_close(out[..., 2], 0.75 * x[..., 1] + 0.25 * x[..., 0], atol=1e-5, rtol=0)
    boxes = draw_crop_boxes(2000, 32, 32, torch.Generator().manual_seed(0))
    top, left, h, w = boxes.unbind(1)
    assert bool(((top >= 0) & (left >= 0) & (top + h <= 32) & (left + w <= 32)).all())
    area = h * w / 1024
    assert float(area.min()) > 0.45 and float(area.max()) <= 1.0
    assert float((w / h).min()) > 0.7 and float((w / h).max()) < 1.4


# ---------------------------------------------------------------------------------------- loop


def _clean_bns(model: nn.Module, data) -> float:
    with BnStatsHooks(model) as hooks, torch.no_grad():
        batch = data.batch(slice(None))
        model(batch["y"].float(), batch["cbcr"].float(), batch["qt"])
        return float(hooks.loss())


def test_synthesis_lowers_bns_on_a_trained_model(dct_teacher):
    # LOR off: resampling blocky starting images makes block-edge frequencies this toy teacher's BN
    # statistics (20 steps on smooth images) put ~1e5 off; a CIFAR-trained teacher sees ~0.1 there.
    # lr 0.1: 20 steps at the default 0.5 (measured fine over 200+ steps) are too noisy to judge.
    start = synthesize(dct_teacher, _cfg(num=8, batch_size=8, iterations=0, lor=False))
    events = []
    config = _cfg(num=8, batch_size=8, iterations=20, lor=False, lr=0.1)
    data = synthesize(dct_teacher, config, progress=events.append)
    bns = [e.bns for e in events if isinstance(e, SynthStep)]
    assert len(bns) == 20 and bns[0] == pytest.approx(_clean_bns(dct_teacher, start), rel=1e-4)
    assert _clean_bns(dct_teacher, data) < 0.2 * _clean_bns(dct_teacher, start)
    assert data.kind == "dct" and data.tensors["y"].dtype == torch.int16 and len(data) == 8
    assert not dct_teacher.training and all(p.requires_grad for p in dct_teacher.parameters())


def test_config_resolves_method_parts_and_rejects_bad_values():
    assert (SynthConfig().lor, SynthConfig().sil, SynthConfig().mdc) == (True, True, True)
    base = SynthConfig(method="bnstats")
    assert (base.lor, base.sil, base.mdc) == (False, False, False)
    assert SynthConfig(method="intraq", mdc=False).mdc is False
    assert SynthConfig.from_dict(SynthConfig(qualities=(60, 70)).to_dict()) == SynthConfig(qualities=(60, 70))
    for bad, match in (
        ({"method": "zeroq"}, "method"),
        ({"qualities": (90, 50)}, "qualities"),
        ({"num": 0}, "num"),
    ):
        with pytest.raises(QuantizationError, match=match):
            SynthConfig(**bad)


def test_bnstats_baseline_and_rgb_models_store_normalised_pixels():
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=3).eval()
    data = synthesize(model, _cfg(num=3, batch_size=3, iterations=3, method="bnstats"))
    assert set(data.tensors) == {"x", "qt", "quality", "label"}
    assert data.tensors["x"].shape == (3, 3, 32, 32) and data.tensors["x"].dtype == torch.float32
    assert torch.equal(data.tensors["qt"], ijg_qt(data.tensors["quality"].tolist()))
    assert data.state == {} and data.config["lor"] is False


def test_resume_after_a_kill_equals_a_straight_run_and_same_seed_same_file(dct_teacher, tmp_path):
    cfg = _cfg(num=10, batch_size=4, iterations=3)
    straight = synthesize(dct_teacher, cfg, tmp_path / "a.pt")
    assert straight.done_batches == straight.num_batches == 3 and len(straight) == 10
    _partial_file(dct_teacher, cfg, tmp_path / "b.pt")
    partial = load_synthetic(tmp_path / "b.pt", allow_partial=True)
    assert partial.done_batches == 1 and len(partial) == 4
    with pytest.raises(DataError, match="--resume"):
        load_synthetic(tmp_path / "b.pt")
    with pytest.raises(DataError, match="already exists"):
        synthesize(dct_teacher, cfg, tmp_path / "b.pt")
    with pytest.raises(DataError, match="iterations"):
        synthesize(dct_teacher, _cfg(num=10, batch_size=4, iterations=5), tmp_path / "b.pt", resume=True)
    resumed = synthesize(dct_teacher, cfg, tmp_path / "b.pt", resume=True)
    on_disk = load_synthetic(tmp_path / "b.pt")
    for data in (resumed, on_disk):
        assert data.tensors.keys() == straight.tensors.keys()
        for k in straight.tensors:
            assert torch.equal(data.tensors[k], straight.tensors[k]), k
        assert data.batch_losses == straight.batch_losses
        for k, v in straight.state["centres"].items():
            got = data.state["centres"][k]
            assert (got is None and v is None) or torch.equal(got, v), k
    # MDC: the first batch had no centres; afterwards every image's class has one.
    assert straight.batch_losses[0]["mdc"] == 0.0
    counts = straight.state["centres"]["count"]
    assert torch.equal(counts, straight.tensors["label"].bincount(minlength=3))
    other = synthesize(dct_teacher, _cfg(num=4, batch_size=4, iterations=3, seed=1))
    assert not torch.equal(other.tensors["y"], straight.tensors["y"][:4])


def _partial_file(teacher, cfg, path):
    """A synthetic file killed after its first batch."""

    class Killed(Exception):
        pass

    def kill(event):
        if isinstance(event, SynthBatchEnd):
            raise Killed

    with pytest.raises(Killed):
        synthesize(teacher, cfg, path, progress=kill)
    return path


@pytest.mark.parametrize(
    ("change", "refused"),
    [
        ({}, None),
        ({"device": "auto", "log_every": 3}, None),  # SynthConfig.RESUMABLE: they change nothing computed
        ({"iterations": 5}, "iterations: file 3 vs now 5"),
        ({"seed": 1, "num": 12}, "num: file 8 vs now 12, seed: file 0 vs now 1"),
        ({"mdc": False}, "mdc: file True vs now False"),
    ],
)
def test_resume_and_quantize_reuse_accept_and_refuse_the_same_changes(dct_teacher, tmp_path, change, refused):
    """`dctq synthesize --resume` and `dctq quantize --synthetic FILE` with synthesis options run one
    check (zeroshot.data.check_continuable); only the flags in the message differ."""
    cfg = _cfg(num=8, batch_size=4, iterations=3)
    path = _partial_file(dct_teacher, cfg, tmp_path / "s.pt")
    now = dataclasses.replace(cfg, **change)
    outcomes = []
    for check in (
        lambda: synthesize(dct_teacher, now, path, resume=True),
        lambda: check_same_options(path, now, dct_teacher, world_size=1),
    ):
        try:
            check()
            outcomes.append(None)
        except DataError as exc:
            outcomes.append(str(exc))
    if refused is None:
        assert outcomes == [None, None]
    else:
        resume, reuse = outcomes
        assert f"--resume: {path} was made with other options ({refused})" in resume
        assert f"--synthetic {path} was made with other options ({refused})" in reuse


def test_resume_and_reuse_refuse_a_file_of_another_teacher_alike(dct_teacher, tmp_path):
    cfg = _cfg(num=8, batch_size=4, iterations=1)
    path = _partial_file(dct_teacher, cfg, tmp_path / "s.pt")
    other = tiny_dct_teacher()
    with torch.no_grad():
        other.fc.bias.add_(1.0)  # same architecture and options, other weights
    why = f"{path} was synthesized from another model (weights differ); use that checkpoint"
    with pytest.raises(DataError) as resume:
        synthesize(other, cfg, path, resume=True)
    with pytest.raises(DataError) as reuse:
        check_same_options(path, cfg, other, world_size=1)
    assert str(resume.value) == f"--resume: {why}" and str(reuse.value) == f"--synthetic {why}"
    finished = synthesize(dct_teacher, cfg, path, resume=True)
    assert finished.complete
    with pytest.raises(DataError) as reused:
        reused_synthetic(path, None, other)
    assert str(reused.value) == why


def test_quantize_reuse_compares_centre_every_as_the_run_rounds_it(dct_teacher, tmp_path):
    """Under torchrun with W processes synthesize records centre_every rounded up to a multiple of W;
    the quantize workflow's pre-check compares that rounded value, as the resume does (it used to
    compare the value asked for and refuse a file that the resume accepts)."""
    path = tmp_path / "s.pt"
    synthesize(dct_teacher, _cfg(num=4, batch_size=4, iterations=1, centre_every=2), path)
    assert load_synthetic(path).config["centre_every"] == 2
    asked = _cfg(num=4, batch_size=4, iterations=1)  # centre_every 1: two processes make it 2
    check_same_options(path, asked, dct_teacher, world_size=2)
    with pytest.raises(DataError, match="centre_every: file 2 vs now 1"):
        check_same_options(path, asked, dct_teacher, world_size=1)


# ---------------------------------------------------------------------------------- grid and CLI


def test_grid_png_has_one_row_per_class(dct_teacher, tmp_path):
    data = synthesize(dct_teacher, _cfg(num=12, batch_size=12, iterations=2, mdc=False))
    pixels = decode_samples(data, [0, 1])
    assert pixels.shape == (2, 32, 32, 3) and pixels.dtype == np.uint8
    path = synthetic_grid_png(data, ["red", "green", "blue"], tmp_path / "grid.png", per_class=4)
    rows = len(set(data.tensors["label"].tolist()))
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size == (96 + 4 * 66, rows * 66)


def test_cli_synthesize_writes_the_file_and_refuses_to_overwrite(dct_teacher, tmp_path):
    ckpt = save_checkpoint(
        tmp_path / "fp.pt",
        dct_teacher,
        arch="dct_cifar_upsampling",
        arch_kwargs={"num_classes": 3, **TINY},
        class_names=["r", "g", "b"],
    )
    args = [
        "synthesize",
        str(ckpt),
        "--out",
        str(tmp_path / "s.pt"),
        "--num",
        "4",
        "--batch-size",
        "4",
        "--iters",
        "2",
    ]
    result = CliRunner().invoke(app, [*args, "--device", "cpu", "--json", "--grid", str(tmp_path / "g.png")])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["images"] == 4 and report["kind"] == "dct" and sum(report["per_class"].values()) == 4
    assert set(report) == {"out", "kind", "images", "batches", "per_class", "config", "batch_losses"}
    assert report["out"] == str(tmp_path / "s.pt") and list(report["per_class"]) == ["r", "g", "b"]
    data = load_synthetic(tmp_path / "s.pt")
    assert data.class_names == ["r", "g", "b"] and data.teacher["arch"] == "dct_cifar_upsampling"
    assert (tmp_path / "g.png").is_file()
    again = CliRunner().invoke(app, [*args, "--device", "cpu"])
    assert again.exit_code == 1 and again.stderr.startswith("error: ") and "already exists" in again.stderr
