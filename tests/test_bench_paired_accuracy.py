"""bench/paired_accuracy.py: McNemar's exact test, the paired interval, and the script end to end."""

from __future__ import annotations

import json
import math

import pytest
import torch
from helpers import load_bench

from dctq.calibration.train import train
from dctq.calibration.train_config import TrainConfig
from dctq.calibration.train_data import build_train_data
from dctq.common.errors import DataError

paired = load_bench("paired_accuracy")


def test_mcnemar_exact_p_is_the_two_sided_binomial_tail():
    assert paired.mcnemar_exact_p(0, 0) == 1.0
    assert paired.mcnemar_exact_p(2, 1) == 1.0  # 2 * (1 + 3) / 8, capped at 1
    assert paired.mcnemar_exact_p(0, 5) == pytest.approx(2 / 32)
    assert paired.mcnemar_exact_p(10, 2) == paired.mcnemar_exact_p(2, 10) == pytest.approx(2 * 79 / 4096)
    stats = pytest.importorskip("scipy.stats")
    for b, c in [(260, 200), (31, 12), (7, 7)]:
        assert paired.mcnemar_exact_p(b, c) == pytest.approx(stats.binomtest(b, b + c, 0.5).pvalue)


def test_paired_summary_counts_and_interval():
    a = torch.tensor([1, 1, 0, 0, 1, 1])
    b = torch.tensor([1, 0, 1, 0, 0, 1])
    r = paired.paired_summary(a, b)
    assert (r["images"], r["only_a_right"], r["only_b_right"]) == (6, 2, 1)
    assert r["top1_a"] == pytest.approx(4 / 6) and r["top1_b"] == pytest.approx(3 / 6)
    assert r["diff"] == pytest.approx(1 / 6)
    d = torch.tensor([0, 1, -1, 0, 1, 0], dtype=torch.float64)  # per-image a - b
    se = math.sqrt(d.var(unbiased=False).item() / 6)
    assert r["ci95"] == pytest.approx([1 / 6 - 1.96 * se, 1 / 6 + 1.96 * se])
    with pytest.raises(DataError, match="equal"):
        paired.paired_summary(a, b[:3])


def test_script_compares_two_checkpoints_on_the_same_images(jpeg_folder, tmp_path):
    config = TrainConfig(
        arch="dct_cifar_upsampling", arch_kwargs={"widths": [8, 8], "depths": [1, 1]}, epochs=1,
        batch_size=4, val_fraction=0.25, stem_stats_batches=2, max_steps_per_epoch=1,
    )  # fmt: skip
    data = build_train_data(jpeg_folder, config)
    one = train(config, data.train, data.val, tmp_path / "one").best_path
    other = train(
        TrainConfig(**{**config.__dict__, "seed": 1}), data.train, data.val, tmp_path / "two"
    ).best_path
    out = tmp_path / "paired.json"
    same = paired.main([str(one), str(one), "--data", str(jpeg_folder), "--batch-size", "1"])
    assert same["images"] == 2 and same["diff"] == 0 and same["p_value"] == 1.0
    assert same["only_a_right"] == same["only_b_right"] == 0
    r = paired.main([str(one), str(other), "--data", str(jpeg_folder), "--quality", "30", "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(r))
    assert r["quality"] == 30 and r["diff"] == pytest.approx(r["top1_a"] - r["top1_b"])
