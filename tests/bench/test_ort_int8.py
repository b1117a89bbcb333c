"""bench/ort_int8.py: its inputs and op summary (bench/ort_ops.py; fast), and one end-to-end run on a tiny checkpoint (slow)."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from helpers import load_bench, saved_model

from dctq.deploy.artifact import ArtifactMeta, TensorSpec, input_specs
from dctq.jpeg.quality import ijg_quant_table


def dct_meta(size: int = 64) -> ArtifactMeta:
    return ArtifactMeta(
        arch=None,
        arch_kwargs={},
        class_names=("a", "b"),
        input_kind="dct",
        input_size=size,
        inputs=input_specs("dct", size),
        outputs=(TensorSpec("logits", ("batch", 2)),),
    )


def test_synthetic_inputs_are_integer_coefficients_with_quality_75_tables():
    bench = load_bench("ort_int8")
    feeds = bench.synthetic_inputs(dct_meta(64), batch=16, seed=3)
    assert feeds["y"].shape == (16, 64, 8, 8) and feeds["cbcr"].shape == (16, 128, 4, 4)
    assert all(a.dtype == np.float32 for a in feeds.values())
    for name in ("y", "cbcr"):
        np.testing.assert_array_equal(feeds[name], np.rint(feeds[name]))
    tables = ijg_quant_table(75)
    np.testing.assert_array_equal(feeds["qt"][5], np.stack([tables[0], tables[1], tables[1]]))
    # DC within the 8-bit range over its step, spread like real files; highest frequencies mostly zero
    dc = feeds["y"][:, 0]
    assert np.abs(dc).max() <= 1024 / tables[0][0] and 30 < dc.std() < 80
    assert (feeds["y"][:, 63] == 0).mean() > 0.9
    assert feeds["cbcr"][:, 0].std() < dc.std() / 2
    again = bench.synthetic_inputs(dct_meta(64), batch=16, seed=3)
    np.testing.assert_array_equal(again["y"], feeds["y"])


def test_kernel_summary_tells_integer_from_float_graphs():
    bench = load_bench("ort_ops")
    mixed = bench.kernel_summary(
        Counter({"QLinearConv": 6, "Conv": 2, "FusedConv": 1, "QLinearAdd": 3, "Gemm": 1})
    )
    assert mixed["integer_kernels"] and mixed["float_conv"] == 3 and mixed["float_gemm"] == 1
    assert mixed["integer_conv_fraction"] == pytest.approx(6 / 9)
    plain = bench.kernel_summary(Counter({"Conv": 4, "Relu": 4}))
    assert not plain["integer_kernels"] and plain["integer_conv_fraction"] == 0.0


@pytest.mark.slow
def test_end_to_end_on_a_tiny_checkpoint(tmp_path, jpeg_folder, capsys):
    _, ckpt = saved_model(
        tmp_path / "fp.pt",
        "dct_cifar_upsampling",
        ["cat", "dog"],
        num_classes=2,
        widths=[8, 16],
        depths=[1, 1],
    )
    out = tmp_path / "result.json"
    argv = [str(ckpt), "--calib", str(jpeg_folder), "--batches", "1,4", "--rounds", "2", "--iters", "2"]
    assert load_bench("ort_int8").main([*argv, "--num-images", "8", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [(r["batch"], r["model"]) for r in result["rows"]] == [
        (b, m) for b in (1, 4) for m in ("fp32", "int8_residual", "int8_both")
    ]
    assert all(r["ms_median"] > 0 for r in result["rows"])
    models = result["models"]
    assert not models["fp32"]["kernels"]["integer_kernels"]
    # the ort backend's rewrite gives the TensorRT-form file the integer graph of the "both" export
    both, residual = models["int8_both"]["kernels"], models["int8_residual"]["kernels"]
    assert (
        both["QLinearConv"] == residual["QLinearConv"] > 0
        and both["float_conv"] == residual["float_conv"] == 0
    )
    assert both["QLinearAdd"] == residual["QLinearAdd"] > 0
    assert models["int8_residual"]["rewrite"]["add_inputs_quantized"] == 2
    assert models["int8_both"]["lint"]["errors"] == models["int8_residual"]["lint"]["errors"] == 0
    assert "| 4 | int8_both |" in capsys.readouterr().out
