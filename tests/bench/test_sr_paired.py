"""bench/sr_paired.py: pooled per-image PSNR differences with a Student-t interval."""

from __future__ import annotations

import json
import math

import pytest
from helpers import load_bench

from dctq.common.errors import DataError

bench = load_bench("sr_paired")


def _report(path, psnrs: dict[str, list[float]]):
    sets = [
        {
            "name": s,
            "psnr": sum(v) / len(v),
            "ssim": 0.9,
            "per_image": [{"name": f"i{k}", "psnr": p, "ssim": 0.9} for k, p in enumerate(v)],
        }
        for s, v in psnrs.items()
    ]
    path.write_text(json.dumps({"sets": sets}))
    return path


def test_pooled_differences_and_interval(tmp_path):
    a = _report(tmp_path / "a.json", {"set5": [30.0, 31.0], "set14": [27.0, 28.0, 29.0]})
    b = _report(tmp_path / "b.json", {"set5": [30.5, 31.1], "set14": [27.2, 27.9, 29.4]})
    result = bench.run(bench.parse_args([str(a), str(b), "--names", "qat,odm"]))
    vs = result["rows"][1]["vs_first"]
    diffs = [0.5, 0.1, 0.2, -0.1, 0.4]  # set5 then set14, image order
    mean = sum(diffs) / 5
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 4)
    assert vs["images"] == 5 and vs["wins"] == 4 and vs["diff_db"] == pytest.approx(mean)
    assert vs["ci95_db"] == pytest.approx(
        [mean - 2.776 * sd / math.sqrt(5), mean + 2.776 * sd / math.sqrt(5)]
    )
    assert "qat" in bench.markdown(result) and "rows" in result
    c = _report(tmp_path / "c.json", {"set5": [30.0], "set14": [27.0, 28.0, 29.0]})
    with pytest.raises(DataError, match="same images"):
        bench.run(bench.parse_args([str(a), str(c)]))


def test_odm_table_pairs_each_row_with_plain_qat_and_leaves_missing_runs_empty(tmp_path):
    table = load_bench("odm_table")
    _report(tmp_path / "fp32.eval.json", {"set5": [31.0, 32.0], "set14": [28.0, 29.0, 30.0]})
    _report(tmp_path / "qat_w4a4.eval.json", {"set5": [30.0, 31.0], "set14": [27.0, 28.0, 29.0]})
    _report(tmp_path / "odm1_w4a4.eval.json", {"set5": [30.2, 31.3], "set14": [27.1, 28.2, 29.1]})
    (tmp_path / "odm1_w4a4.quantize.json").write_text(json.dumps({"quantization": {"qat": {
        "conflict_ratio": {"body.0.conv1": 0.4}, "conflict_ratio_total": 0.4, "offsets": [], "weight_clip": {},
        "history": [{"seconds": 10.0}, {"seconds": 5.0}]}}}))  # fmt: skip
    result = table.run(table.parse_args([str(tmp_path)]))
    cell = result["cells"]["odm1_w4a4"]
    assert cell["vs_qat"]["diff_db"] == pytest.approx(0.18) and cell["vs_qat"]["wins"] == 5
    assert cell["vs_fp32"]["diff_db"] == pytest.approx(-0.82) and cell["seconds"] == 15.0
    text = table.markdown(result)
    assert "+0.180" in text and "| - |" in text  # W3A3 / W2A2 rows not run
    assert "-0.820" in text and "; 15 s" in text  # vs FP32, with the QAT seconds
    assert "| body.0.conv1 | 40.0 |" in text and "| all elements | 40.0 |" in text  # conflict ratio per layer
