"""The hierarchical autoencoder: shapes, top-down codes, encode/decode = forward, sizes, presets, rates."""

from __future__ import annotations

import math

import pytest
import torch

from dctq.common.errors import ModelError
from dctq.jpeg.rgb import normalize_pixels
from dctq.models import count_macs, count_params, create_model, get_model_info, list_models
from dctq.models.dq.autoencoder import HierarchicalAE
from dctq.models.dq.rate import CodeStats, prior_bits, psnr, uniform_bits

TINY = {"channels": 8, "res_channels": 4, "code_dim": 2, "num_codebooks": 2, "levels": (8, 8), "n_mix": 2}


def _pixels(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, size, size, 3), generator=gen, dtype=torch.uint8)


def test_registered_as_autoencoders_with_adam_defaults():
    names = [i.name for i in list_models(task="autoencode")]
    assert names == ["dq_ae", "dq_ae_cpu"]
    info = get_model_info("dq_ae")
    assert info.input_kind == "rgb" and info.train_defaults["optimizer"] == "adam"
    assert info.train_defaults["lr"] == 2e-4 and info.train_defaults["clip_grad_norm"] == 2.0


# (parameters, MACs at 32x32) of the two presets, measured; dq_ae is the paper's topology at C = 256.
REGRESSION = {"dq_ae": (44_598_564, 5_802_295_296), "dq_ae_cpu": (288_178, 50_380_800)}


@pytest.mark.parametrize("name", sorted(REGRESSION))
def test_preset_sizes(name):
    with torch.device("meta"):
        model = create_model(name)
    assert (count_params(model), count_macs(model)) == REGRESSION[name]


def test_paper_code_rate_is_2100_bits_per_cifar_image():
    with torch.device("meta"):
        model = create_model("dq_ae")
    shapes = model.code_shapes(32, 32)
    assert shapes == [(5, 8, 8), (5, 4, 4), (5, 2, 2)]
    bits = sum(g * h * w * math.log2(k) for (g, h, w), k in zip(shapes, model.levels, strict=True))
    assert bits == 2100


@pytest.mark.parametrize("mode", ["dq", "vq", "single"])
@pytest.mark.parametrize("head", ["mse", "ce", "mix"])
def test_forward_encode_decode_agree(mode, head):
    torch.manual_seed(0)
    model = HierarchicalAE(**TINY, mode=mode, head=head).eval()
    pixels = _pixels(2)
    x = torch.from_numpy(normalize_pixels(pixels.numpy()))
    assert torch.equal(model.pixels_from_input(x), pixels.permute(0, 3, 1, 2).long())
    with torch.no_grad():
        out = model(x)
        codes = model.encode(x)
        assert [tuple(c.shape) for c in codes] == [(2, model.groups, 8, 8), (2, model.groups, 4, 4)]
        assert all(torch.equal(a, b) for a, b in zip(codes, out.codes, strict=True))
        assert torch.equal(model.decode(codes), out.out)
    channels = {"mse": 3, "ce": 768, "mix": 20}[head]
    assert out.out.shape == (2, channels, 32, 32)
    mean = model.mean_pixels(out.out)
    assert mean.shape == (2, 3, 32, 32) and 0 <= mean.min() and mean.max() <= 255


def test_training_step_reaches_every_parameter_and_moves_the_codebooks():
    torch.manual_seed(0)
    model = HierarchicalAE(**TINY).train()
    x = torch.from_numpy(normalize_pixels(_pixels(4).numpy()))
    before = [b.embed.clone() for q in model.quantizers for b in q.codebooks]
    out = model(x)
    loss, recon = model.loss(out, model.pixels_from_input(x))
    assert loss > recon > 0
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    after = [b.embed for q in model.quantizers for b in q.codebooks]
    assert all(not torch.equal(a, b) for a, b in zip(before, after, strict=True))


def test_fully_convolutional_on_multiples_of_the_total_stride():
    model = HierarchicalAE(**TINY).eval()
    assert model.stride_multiple == 8
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 48, 64))
    assert out.out.shape[-2:] == (48, 64) and out.codes[1].shape[-2:] == (6, 8)
    with pytest.raises(ModelError, match="multiples of 8 pixels, got 30x24"):
        model(torch.zeros(1, 3, 24, 30))


def test_rates_and_stats():
    torch.manual_seed(0)
    model = HierarchicalAE(**TINY).eval()
    pixels = _pixels(3)
    x = torch.from_numpy(normalize_pixels(pixels.numpy()))
    with torch.no_grad():
        out = model(x)
    per_image = 2 * (64 + 16) * 3  # G * positions * log2(8)
    assert torch.equal(
        uniform_bits(model, out.codes), torch.full((3,), float(per_image), dtype=torch.float64)
    )
    for q in model.quantizers:  # equal EMA counts: the prior is uniform
        for b in q.codebooks:
            b.cluster_size.fill_(5.0)
    assert torch.allclose(
        prior_bits(model, out.codes), torch.full((3,), float(per_image), dtype=torch.float64)
    )
    stats = CodeStats(model)
    stats.add(model.pixels_from_input(x), out.out, out.codes)
    s = stats.summary()
    assert s["images"] == 3 and s["code_bits_uniform"] == per_image
    assert s["code_bpd_uniform"] == pytest.approx(per_image / 3072)
    assert s["bpd_uniform"] == pytest.approx(s["recon_bpd"] + s["code_bpd_uniform"])
    assert all(0 < u <= 1 for u in s["usage"]) and all(1 <= p <= 8 for p in s["perplexity"])
    assert psnr(pixels.float(), pixels.float()).eq(100).all()


@pytest.mark.parametrize(
    "kwargs", [{"levels": ()}, {"mode": "pq"}, {"head": "l1"}, {"channels": 7}, {"input_size": 20}]
)
def test_bad_arguments(kwargs):
    with pytest.raises(ModelError):
        HierarchicalAE(**{**TINY, **kwargs})
