"""Autoencoders deployed: evaluate (bits/dim, PSNR), predict (reconstruction + bits), ONNX encoder/decoder in
ONNX Runtime with the checkpoint's codes, PTQ, and the one-line errors of the commands."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import typer
from helpers import jpeg_bytes, smooth_rgb
from PIL import Image
from typer.testing import CliRunner

from dctq.cli import evaluate_cmd, export_cmd, predict_cmd, profile_cmd, quantize_cmd
from dctq.common.errors import ExportError, ModelError
from dctq.deploy.autoencode import evaluate_autoencoder, load_codec, reconstruct
from dctq.jpeg.rgb import normalize_pixels
from dctq.models.checkpoint import save_checkpoint
from dctq.models.registry import create_model

TINY_AE = {"channels": 8, "res_channels": 4, "code_dim": 2, "levels": [8, 8], "n_mix": 2, "num_codebooks": 2}


@pytest.fixture
def ae_checkpoint(tmp_path, jpeg_folder):
    """A tiny dq_ae_cpu whose codebooks took a few EMA steps on the folder's images."""
    torch.manual_seed(0)
    model = create_model("dq_ae_cpu", **TINY_AE).train()
    rgb = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(jpeg_folder.rglob("*.jpg"))])
    x = torch.from_numpy(normalize_pixels(rgb))
    with torch.no_grad():
        for _ in range(3):
            model(x)
    return save_checkpoint(
        tmp_path / "ae.pt", model.eval(), arch="dq_ae_cpu", arch_kwargs=TINY_AE, class_names=[]
    )


def _app(*modules) -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:  # a group even with one command, so invocations name it
        """dctq (test)."""

    for module in modules:
        module.register(app)
    return app


def _invoke(app, *args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_evaluate_reports_bits_per_dim_psnr_and_usage(ae_checkpoint, jpeg_folder):
    result = _invoke(
        _app(evaluate_cmd), "evaluate", ae_checkpoint, "--data", jpeg_folder, "--split", "all", "--json"
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["task"] == "autoencode" and report["params"] > 0 and report["backend"] == "torch"
    row = report["rows"][0]
    assert row["images"] == 8 and row["code_bits_uniform"] == 2 * 3 * (64 + 16)
    assert row["bpd_uniform"] == pytest.approx(row["recon_bpd"] + row["code_bpd_uniform"])
    assert row["bpd_prior"] == pytest.approx(row["recon_bpd"] + row["code_bpd_prior"])
    assert len(row["usage"]) == 2 and all(0 < u <= 1 for u in row["usage"])
    table = _invoke(_app(evaluate_cmd), "evaluate", ae_checkpoint, "--data", jpeg_folder, "--split", "all")
    assert table.exit_code == 0 and "bits/dim" in table.output
    recompressed = evaluate_autoencoder(
        ae_checkpoint, jpeg_folder, val_fraction=0.25, split="all", qualities=[10]
    )
    ((quality, low),) = recompressed.rows
    assert quality == 10 and low["psnr_rgb"] != pytest.approx(
        row["psnr_rgb"]
    )  # other pixels in, other pixels out


def test_onnx_encoder_and_decoder_match_pytorch(ae_checkpoint, jpeg_folder, tmp_path):
    pytest.importorskip("onnxruntime")
    app = _app(export_cmd, evaluate_cmd, profile_cmd)
    result = _invoke(
        app, "export", ae_checkpoint, "--format", "onnx", "--out", tmp_path / "ae.onnx", "--json"
    )
    assert result.exit_code == 0, result.output
    encoder, decoder = (tmp_path / "ae.encoder.onnx"), (tmp_path / "ae.decoder.onnx")
    assert json.loads(result.stdout)["parts"] == [str(encoder), str(decoder)]
    import onnx

    ops = {n.op_type for n in onnx.load(str(encoder)).graph.node}
    assert {"ArgMin", "Gather", "MatMul", "Conv"} <= ops
    torch_codec, ort_codec = load_codec(ae_checkpoint), load_codec(decoder)  # either part finds the other
    rgb = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(jpeg_folder.rglob("*.jpg"))])
    x = torch.from_numpy(normalize_pixels(rgb))
    codes_t, codes_o = torch_codec.encode(x), ort_codec.encode(x)
    assert all(torch.equal(a, b) for a, b in zip(codes_t, codes_o, strict=True))
    (pix_t, head_t), (pix_o, head_o) = torch_codec.decode(codes_t), ort_codec.decode(codes_o)
    assert torch.allclose(head_t, head_o, atol=1e-4) and torch.allclose(pix_t, pix_o, atol=1e-3)
    by_ort = evaluate_autoencoder(encoder, jpeg_folder, val_fraction=0.25, split="all")
    by_torch = evaluate_autoencoder(ae_checkpoint, jpeg_folder, val_fraction=0.25, split="all")
    a, b = by_ort.rows[0][1], by_torch.rows[0][1]
    assert by_ort.backend == "ort" and a["code_bits_prior"] == pytest.approx(b["code_bits_prior"])
    assert a["bpd_uniform"] == pytest.approx(b["bpd_uniform"], abs=1e-4) and a["usage"] == b["usage"]
    prof = _invoke(app, "profile", encoder, "--backend", "ort", "--batch", "1", "--iters", "2", "--json")
    assert prof.exit_code == 0, prof.output
    assert json.loads(prof.stdout)["rows"][0]["batch"] == 1
    decoder.unlink()
    with pytest.raises(ExportError, match=r"decoder .* is missing"):
        load_codec(encoder)


def test_predict_writes_the_reconstruction_and_prints_the_bits(ae_checkpoint, make_jpeg, tmp_path):
    image = make_jpeg("photo.jpg", height=48, width=64)  # fully convolutional: any multiple of 8
    app = _app(predict_cmd)
    result = _invoke(app, "predict", ae_checkpoint, image, "--out", tmp_path / "rec.png", "--json")
    assert result.exit_code == 0, result.output
    (rec,) = json.loads(result.stdout)
    assert (rec["width"], rec["height"]) == (64, 48) and rec["code_bits_uniform"] == 2 * 3 * (12 * 16 + 6 * 8)
    assert np.asarray(Image.open(tmp_path / "rec.png")).shape == (48, 64, 3)
    again = reconstruct(ae_checkpoint, [image])[0]
    assert again.out is None and again.psnr_rgb == pytest.approx(rec["psnr_rgb"])
    table = _invoke(app, "predict", ae_checkpoint, image, make_jpeg("b.jpg"), "--out", tmp_path / "recs")
    assert table.exit_code == 0 and (tmp_path / "recs" / "b.png").is_file()


@pytest.mark.parametrize("case", ["size", "classifier", "empty", "zeroshot", "format"])
def test_bad_input_is_one_line(case, ae_checkpoint, make_jpeg, tmp_path):
    if case == "size":
        args = [
            "predict",
            ae_checkpoint,
            make_jpeg("odd.jpg", height=36, width=36),
            "--out",
            tmp_path / "r.png",
        ]
        expect = "multiples of 8 pixels"
    elif case == "classifier":
        clf = save_checkpoint(tmp_path / "c.pt", create_model("resnet20"), arch="resnet20", arch_kwargs={},
                              class_names=[str(i) for i in range(10)])  # fmt: skip
        args = ["predict", clf, make_jpeg(), "--out", tmp_path / "r.png"]
        expect = "'classify' model"
        with pytest.raises(ModelError, match="not an autoencoder"):
            load_codec(clf)
    elif case == "zeroshot":
        args = ["quantize", ae_checkpoint, "--method", "intraq", "--out", tmp_path / "zq.pt"]
        expect = "use --method ptq"
    elif case == "format":
        args = ["export", ae_checkpoint, "--format", "torchscript"]
        expect = "exports to ONNX only"
    else:
        (tmp_path / "empty" / "cat").mkdir(parents=True)
        args = ["evaluate", ae_checkpoint, "--data", tmp_path / "empty"]
        expect = "no JPEG"
    result = _invoke(_app(predict_cmd, evaluate_cmd, quantize_cmd, export_cmd), *args)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0], result.output


def test_ptq_w8a8_of_the_convolutions(ae_checkpoint, jpeg_folder, tmp_path):
    app = _app(quantize_cmd)
    q = tmp_path / "q.pt"
    result = _invoke(app, "quantize", ae_checkpoint, "--method", "ptq", "--calib", jpeg_folder, "--num-images", 8,
                     "--out", q, "--json")  # fmt: skip
    assert json.loads(result.stdout)
    assert result.exit_code == 0, result.output
    fp = evaluate_autoencoder(ae_checkpoint, jpeg_folder, val_fraction=0.25, split="all").rows[0][1]
    int8 = evaluate_autoencoder(q, jpeg_folder, val_fraction=0.25, split="all").rows[0][1]
    assert int8["code_bits_uniform"] == fp["code_bits_uniform"]
    assert abs(int8["bpd_uniform"] - fp["bpd_uniform"]) < 0.5 and int8["psnr_rgb"] > 0


@pytest.mark.slow
def test_ptq_autoencoder_exports_qdq_onnx(ae_checkpoint, jpeg_folder, tmp_path):
    pytest.importorskip("onnxruntime")
    app = _app(quantize_cmd, export_cmd)
    q = tmp_path / "q.pt"
    result = _invoke(app, "quantize", ae_checkpoint, "--method", "ptq", "--calib", jpeg_folder, "--num-images", 8,
                     "--out", q)  # fmt: skip
    assert result.exit_code == 0, result.output
    exported = _invoke(app, "export", q, "--out", tmp_path / "q.onnx", "--json")
    assert exported.exit_code == 0, exported.output
    assert json.loads(exported.stdout)["quantized"]
    x = torch.from_numpy(
        normalize_pixels(np.asarray(Image.open(next(jpeg_folder.rglob("*.jpg"))).convert("RGB"))[None])
    )
    codes_t, codes_o = load_codec(q).encode(x), load_codec(tmp_path / "q.encoder.onnx").encode(x)
    agree = sum(int((a == b).sum()) for a, b in zip(codes_t, codes_o, strict=True))
    assert agree >= 0.9 * sum(c.numel() for c in codes_t)  # fake-quant vs integer kernels: rounding differs


def test_jpeg_bytes_helper_is_a_real_jpeg():
    assert jpeg_bytes(smooth_rgb(16, 16)).startswith(b"\xff\xd8")
