"""CUDA: the torch backend against the CPU, the GPU input path's uploads, the CUDA profiler.

Marked `gpu` (deselected by default; run with `-m gpu`) and skipped without CUDA."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from helpers import saved_model
from PIL import Image

from dctq.deploy.artifact import load_artifact
from dctq.deploy.backends.registry import load_runner
from dctq.deploy.profiling.cuda import ProfileConfig, profile_cuda, profile_end_to_end
from dctq.deploy.profiling.gpu_input import DctInput, RgbInput, dct_h2d_bytes
from dctq.jpeg.geometry import center_crop_or_pad
from dctq.jpeg.reader import read_jpeg
from dctq.models import create_model, example_inputs

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)"
    ),
]


@pytest.fixture(autouse=True)
def _exact_fp32():
    """TF32 would make CUDA convolutions differ from the CPU by ~1e-3 relative."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _jpegs(n: int, size: int = 40) -> list[bytes]:
    out = []
    for seed in range(n):
        rng = np.random.default_rng(seed)
        small = rng.uniform(0, 255, (size // 8, size // 8, 3)).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(small).resize((size, size), Image.BICUBIC).save(buf, format="JPEG", quality=85)
        out.append(buf.getvalue())
    return out


@pytest.mark.parametrize("arch", ["dct_cifar_upsampling", "resnet20"])
def test_torch_backend_cuda_matches_cpu(arch: str, tmp_path) -> None:
    model, path = saved_model(tmp_path / "m.pt", arch, [str(i) for i in range(10)])
    artifact = load_artifact(path)
    inputs = example_inputs(model, 8, seed=1)
    batch = dict(zip(("y", "cbcr", "qt") if model.input_kind == "dct" else ("x",), inputs, strict=True))
    cpu = load_runner(artifact, "torch", device="cpu").predict(batch)
    gpu_runner = load_runner(artifact, "torch", device="cuda")
    gpu = gpu_runner.predict(batch)
    gpu_runner.synchronize()
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=1e-4)


def test_gpu_input_uploads_the_exact_coefficients() -> None:
    jpegs = _jpegs(10)
    path = DctInput(4, (32, 32), device="cuda", dtype=torch.float16, workers=2)
    batches = list(path.batches(jpegs))
    y = torch.cat([b.ready()[0] for b in batches]).cpu()
    cbcr = torch.cat([b.ready()[1] for b in batches]).cpu()
    assert batches[0].inputs[0].device.type == "cuda" and path.up.buffers[0]["y"].is_pinned()
    for i, data in enumerate(jpegs):
        c = read_jpeg(data)
        want_y, want_c = center_crop_or_pad(c.y, c.cbcr, 4, 4)
        np.testing.assert_array_equal(y[i].numpy().astype(np.int32), want_y)
        np.testing.assert_array_equal(cbcr[i].numpy().astype(np.int32), want_c)
    stats = path.stats()
    assert stats.bytes_per_image == dct_h2d_bytes(32, 32) and stats.h2d_seconds > 0


def test_rgb_input_on_cuda_equals_cpu() -> None:
    jpegs = _jpegs(5)
    on_gpu = torch.cat(
        [b.ready()[0] for b in RgbInput(2, (32, 32), device="cuda", dtype=torch.float32).batches(jpegs)]
    )
    on_cpu = torch.cat(
        [b.ready()[0] for b in RgbInput(2, (32, 32), device="cpu", dtype=torch.float32).batches(jpegs)]
    )
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_cuda_profile_runs(precision: str) -> None:
    model = create_model("dct_cifar_upsampling")
    rows = profile_cuda(model, ProfileConfig(batch_sizes=(1, 16), warmup=2, iters=5, precision=precision))
    for row in rows:
        assert 0 < row.h2d.p50 and 0 < row.compute.p50 and 0 < row.d2h.p50
        assert row.total.p50 <= row.total.p99 and row.images_per_second > 0


def test_cuda_profile_compiled() -> None:
    rows = profile_cuda(
        create_model("resnet20"),
        ProfileConfig(batch_sizes=(8,), warmup=2, iters=3, compile=True, precision="fp16"),
    )
    assert rows[0].images_per_second > 0


def test_end_to_end_on_cuda_predicts_like_the_cpu() -> None:
    jpegs = _jpegs(12)
    torch.manual_seed(0)
    model = create_model("dct_cifar_upsampling").eval()
    fp32 = ProfileConfig(precision="fp32", channels_last=False)
    gpu = profile_end_to_end(model, jpegs, batch_size=5, config=fp32)
    cpu = profile_end_to_end(model, jpegs, batch_size=5, config=ProfileConfig(precision="fp32", device="cpu"))
    assert gpu.predictions == cpu.predictions and gpu.images == 12
    assert gpu.transfers.h2d_seconds > 0
    rgb = profile_end_to_end(
        create_model("resnet20"), jpegs, batch_size=5, config=ProfileConfig(precision="fp16")
    )
    assert rgb.images == 12 and rgb.images_per_second > 0
