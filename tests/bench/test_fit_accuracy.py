"""bench/fit_accuracy.py: the three ways to fit a larger photograph, scored and paired on real files."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from helpers import load_bench, saved_model, tiny_train_run
from PIL import Image

from dctq.common.errors import DataError
from dctq.jpeg.reader import read_jpeg
from dctq.models.checkpoint import load_checkpoint

fit = load_bench("fit_accuracy")


def test_upscaled_is_a_4_2_0_jpeg_factor_times_the_size(jpeg_folder):
    data = (jpeg_folder / "cat" / "0.jpg").read_bytes()
    big = fit.upscaled(data, 4, 90)
    coefs = read_jpeg(big)
    assert (coefs.height, coefs.width) == (128, 128)
    with Image.open(io.BytesIO(big)) as img, Image.open(io.BytesIO(data)) as small:
        # the picture is the same one: shrunk back, it is close to the original
        back = np.asarray(img.convert("RGB").resize((32, 32), Image.Resampling.BOX), dtype=float)
        assert np.abs(back - np.asarray(small.convert("RGB"), dtype=float)).mean() < 12


def test_script_scores_every_fit_and_pairs_it_with_pixels(jpeg_folder, tmp_path):
    ckpt = tiny_train_run(jpeg_folder, tmp_path / "run")[0].best_path
    out = tmp_path / "fit.json"
    r = fit.main(
        [str(ckpt), "--data", str(jpeg_folder), "--factors", "2,4", "--rounds", "1", "--json", str(out)]
    )
    assert json.loads(out.read_text()) == json.loads(json.dumps(r))
    assert [(row["factor"], row["method"]) for row in r["rows"]] == [
        (1, "native"),
        *[(f, m) for f in (2, 4) for m in ("crop", "dct", "pixels")],
    ]
    assert r["images"] == 2  # the tiny run holds a quarter of the 8 files out
    for row in r["rows"][1:]:
        assert 0 <= row["top1"] <= 1 and row["fit_ms"] > 0
        assert row["vs_pixels"]["diff"] == pytest.approx(
            row["top1"] - r["rows"][3 if row["factor"] == 2 else 6]["top1"]
        )
    pixels = [row for row in r["rows"] if row["method"] == "pixels"]
    assert all(row["vs_pixels"]["diff"] == 0 and row["vs_pixels"]["p_value"] == 1.0 for row in pixels)
    assert "| x4 | dct |" in fit.markdown(r)


def test_script_refuses_rgb_models_and_other_factors(jpeg_folder, tmp_path):
    dct, _ = tiny_train_run(jpeg_folder, tmp_path / "dct")
    classes = load_checkpoint(dct.best_path).class_names
    with pytest.raises(DataError, match="2, 4 or 8"):
        fit.main([str(dct.best_path), "--data", str(jpeg_folder), "--factors", "3"])
    _, rgb = saved_model(tmp_path / "rgb.pt", "resnet20", classes, num_classes=2)
    with pytest.raises(DataError, match="rgb model"):
        fit.main([str(rgb), "--data", str(jpeg_folder)])
