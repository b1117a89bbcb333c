"""bench/paired_accuracy.py: McNemar's exact test, the paired interval, and the script end to end."""

from __future__ import annotations

import json
import math
import statistics

import pytest
import torch
from helpers import load_bench, saved_model, tiny_train_run

from dctq.common.errors import DataError
from dctq.models.checkpoint import load_checkpoint

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


def test_mean_summary_averages_each_image_over_qualities_first():
    a30, b30 = torch.tensor([1, 1, 0, 1]), torch.tensor([0, 1, 0, 0])  # a - b: 1, 0, 0, 1
    a90, b90 = torch.tensor([1, 0, 1, 1]), torch.tensor([1, 1, 1, 0])  # a - b: 0, -1, 0, 1
    r = paired.mean_summary([(a30, b30), (a90, b90)])
    per_image = torch.tensor([0.5, -0.5, 0.0, 1.0])
    se = float(per_image.std()) / 2
    assert r["images"] == 4 and r["qualities"] == 2
    assert r["top1_a"] == pytest.approx(6 / 8) and r["top1_b"] == pytest.approx(4 / 8)
    assert r["diff"] == pytest.approx(0.25) and r["ci95"] == pytest.approx(
        [0.25 - 1.96 * se, 0.25 + 1.96 * se]
    )
    assert r["p_value"] == pytest.approx(2 * (1 - statistics.NormalDist().cdf(0.25 / se)))
    same = paired.mean_summary([(a30, a30)])
    assert same["diff"] == 0 and same["p_value"] == 1.0


def test_script_compares_two_checkpoints_on_the_same_images(jpeg_folder, tmp_path):
    one = tiny_train_run(jpeg_folder, tmp_path / "one")[0].best_path
    other = tiny_train_run(jpeg_folder, tmp_path / "two", seed=1)[0].best_path
    out = tmp_path / "paired.json"
    same = paired.main([str(one), str(one), "--data", str(jpeg_folder), "--batch-size", "1"])
    assert same["images"] == 2 and same["diff"] == 0 and same["p_value"] == 1.0
    assert same["only_a_right"] == same["only_b_right"] == 0
    r = paired.main([str(one), str(other), "--data", str(jpeg_folder), "--quality", "30", "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(r))
    assert r["quality"] == 30 and r["diff"] == pytest.approx(r["top1_a"] - r["top1_b"])
    rows = paired.main([str(one), str(other), "--data", str(jpeg_folder), "--qualities", "30,90"])
    assert [row["quality"] for row in rows["rows"]] == [30, 90]
    assert rows["rows"][0]["diff"] == r["diff"] and rows["rows"][0]["p_value"] == r["p_value"]
    assert rows["mean"]["diff"] == pytest.approx(sum(row["diff"] for row in rows["rows"]) / 2)
    three = paired.main(
        [str(one), str(other), "--data", str(jpeg_folder), "--qualities", "10,30,90", "--mean-over", "30,90"]
    )
    assert three["mean_over"]["over"] == [30, 90] and three["mean_over"]["diff"] == pytest.approx(
        rows["mean"]["diff"]
    )
    assert "mean 30,90" in paired.markdown(three)
    with pytest.raises(DataError, match="subset"):
        paired.main(
            [str(one), str(other), "--data", str(jpeg_folder), "--qualities", "30", "--mean-over", "50"]
        )
    with pytest.raises(DataError, match="not both"):
        paired.main(
            [str(one), str(other), "--data", str(jpeg_folder), "--quality", "30", "--qualities", "30,90"]
        )


def test_script_refuses_to_pair_dct_with_rgb(jpeg_folder, tmp_path):
    dct, _ = tiny_train_run(jpeg_folder, tmp_path / "dct")
    loaded = load_checkpoint(dct.best_path)
    _, rgb = saved_model(tmp_path / "rgb.pt", "resnet20", loaded.class_names, num_classes=2)
    with pytest.raises(DataError, match="dct vs rgb"):
        paired.main([str(dct.best_path), str(rgb), "--data", str(jpeg_folder)])
