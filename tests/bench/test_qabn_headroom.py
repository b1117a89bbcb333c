"""bench/qabn_headroom.py: exact BN re-estimation, and the script end to end on a tiny trained model."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import load_bench, tiny_train_run

from dctq.jpeg.batch import model_inputs
from dctq.jpeg.dataset import make_loader

headroom = load_bench("qabn_headroom")


@pytest.fixture
def trained(jpeg_folder, tmp_path):
    return tiny_train_run(jpeg_folder, tmp_path / "run")


def test_reestimate_bn_is_the_exact_average_over_the_batches(trained):
    result, data = trained
    batches = list(make_loader(data.train, 3, shuffle=False, num_workers=0))  # 6 images: two batches of 3
    assert [len(b["label"]) for b in batches] == [3, 3]
    # Nothing before the first BN depends on train/eval mode, so its inputs can be read off the original.
    original = next(m for m in result.model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    inputs = []
    handle = original.register_forward_hook(lambda m, args, out: inputs.append(args[0].detach()))
    with torch.no_grad():
        result.model.eval()
        for b in batches:
            result.model(*model_inputs(b, torch.device("cpu")))
    handle.remove()
    model = headroom.reestimate_bn(result.model, batches)
    first = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    # momentum=None: the plain average of the per-batch mean and unbiased variance.
    mean = torch.stack([x.mean(dim=(0, 2, 3)) for x in inputs]).mean(0)
    var = torch.stack([x.var(dim=(0, 2, 3), unbiased=True) for x in inputs]).mean(0)
    assert torch.allclose(first.running_mean, mean, atol=1e-5)
    assert torch.allclose(first.running_var, var, rtol=1e-4, atol=1e-6)
    assert not torch.allclose(original.running_mean, mean, atol=1e-5)  # the original is left alone
    assert not model.training


def test_headroom_script_end_to_end(trained, jpeg_folder, tmp_path):
    result, data = trained
    out = tmp_path / "headroom.json"
    args = [str(result.best_path), "--data", str(jpeg_folder), "--qualities", "10,90", "--num-images", "4"]
    report = headroom.main([*args, "--batch-size", "2", "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    assert [r["quality"] for r in report["rows"]] == [10, 90] and report["num_images"] == 4
    assert report["eval_images"] == len(data.val) == 2
    for r in report["rows"]:
        assert r["own_bn_top1"] in (0.0, 0.5, 1.0) and r["per_quality_bn_top1"] in (0.0, 0.5, 1.0)
        assert r["gain"] == pytest.approx(r["per_quality_bn_top1"] - r["own_bn_top1"])
        assert r["plain_bn_top1"] in (0.0, 0.5, 1.0) and r["stored_bn_top1"] in (0.0, 0.5, 1.0)
