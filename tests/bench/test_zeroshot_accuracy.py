"""bench/zeroshot_accuracy.py end to end on a tiny checkpoint (slow): every method, BN folded or not,
ranges from each set or from the BN-statistics one."""

from __future__ import annotations

import json

import pytest
from helpers import load_bench, saved_model


@pytest.mark.slow
@pytest.mark.parametrize("fold", [True, False])
def test_end_to_end_on_a_tiny_checkpoint(tmp_path, jpeg_folder, capsys, fold):
    from dctq.calibration.train.config import TrainConfig
    from dctq.models.checkpoint import load_checkpoint

    kwargs = {"num_classes": 2, "widths": [8, 16], "depths": [1, 1]}
    extra = {"train_config": TrainConfig("dct_cifar_upsampling", val_fraction=0.5).to_dict()}
    _, ckpt = saved_model(tmp_path / "fp.pt", "dct_cifar_upsampling", ["cat", "dog"], extra=extra, **kwargs)
    assert load_checkpoint(ckpt).arch == "dct_cifar_upsampling"
    out = tmp_path / "zs.json"
    argv = [
        str(ckpt),
        "--data",
        str(jpeg_folder),
        "--num-images",
        "4",
        "--num-synthetic",
        "4",
        "--synth-iters",
        "2",
        "--synth-batch-size",
        "4",
        "--epochs",
        "1",
        "--steps-per-epoch",
        "2",
        "--tune-batch-size",
        "4",
        "--bits",
        "w8a8,w4a4",
        "--lr",
        "1e-4",
        "--json",
        str(out),
    ]
    load_bench("zeroshot_accuracy").main(argv + ([] if fold else ["--no-fold-bn", "--calib-from", "bnstats"]))
    result = json.loads(out.read_text())
    assert [(r["method"], r["bits"]) for r in result["rows"]] == [("fp32", None)] + [
        (m, b) for m in ("ptq", "bnstats", "intraq") for b in ("w8a8", "w4a4")
    ]
    assert all(r["fold_bn"] is fold for r in result["recipes"].values())
    assert result["zero_shot"]["lr"] == 1e-4
    printed = capsys.readouterr().out
    assert f"BN {'folded' if fold else 'unfolded'}" in printed
    assert ("ranges from the bnstats set" in printed) is not fold
