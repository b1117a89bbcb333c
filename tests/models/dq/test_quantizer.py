"""The quantization bottleneck: nearest codes, the three modes, STE, EMA k-means, dead-code restart."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dctq.common.errors import ModelError
from dctq.models.dq.quantizer import Codebook, QuantBottleneck


def test_nearest_is_the_brute_force_argmin():
    torch.manual_seed(0)
    book = Codebook(8, 50)
    z = torch.randn(300, 8)
    expected = torch.cdist(z, book.embed).argmin(1)
    assert torch.equal(book.nearest(z), expected)
    assert torch.equal(book.lookup(expected), book.embed[expected])


def test_one_ema_step_with_small_decay_is_a_kmeans_step():
    torch.manual_seed(0)
    book = Codebook(2, 3, decay=1e-6, restart_threshold=0.0)
    book.embed.copy_(torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]))
    z = torch.cat(
        [torch.randn(40, 2) * 0.5 + torch.tensor(c) for c in ([0.0, 0.0], [10.0, 0.0], [0.0, 10.0])]
    )
    codes = book.nearest(z)
    book.update(z, codes)
    for k in range(3):
        assert torch.allclose(book.embed[k], z[codes == k].mean(0), atol=1e-3)
    assert torch.allclose(book.cluster_size, torch.full((3,), 40.0), atol=1e-3)


def test_dead_codes_restart_from_current_encoder_outputs():
    torch.manual_seed(0)
    book = Codebook(4, 8)
    book.embed.copy_(torch.randn(8, 4) * 100)  # far from the data: at most one code wins
    z = torch.randn(64, 4) * 0.01
    codes = book.nearest(z)
    used = set(codes.tolist())
    book.update(z, codes)
    dead = [k for k in range(8) if k not in used]
    assert dead
    for k in dead:  # each restarted code is one of the rows of z, its statistics afresh
        assert torch.isclose(book.embed[k][None], z, atol=1e-5).all(1).any()
        assert book.cluster_size[k] == 1.0
    # the next batch spreads over several codes
    assert book.nearest(z).unique().numel() > 1


def test_restart_tiles_with_noise_when_fewer_outputs_than_codes():
    torch.manual_seed(0)
    book = Codebook(4, 16)
    book.embed.mul_(100)
    z = torch.randn(3, 4)
    book.update(z, book.nearest(z))
    assert torch.isfinite(book.embed).all()
    nearest_row = torch.cdist(book.embed, z).min(1).values
    assert (nearest_row < 0.05).sum() >= 15  # tiled copies of the 3 rows, noise 0.01/sqrt(d)


@pytest.mark.parametrize("mode, groups, proj_out", [("dq", 3, 12), ("vq", 3, 4), ("single", 1, 12)])
def test_modes_share_the_output_and_differ_in_what_they_quantize(mode, groups, proj_out):
    torch.manual_seed(0)
    q = QuantBottleneck(6, mode=mode, num_codebooks=3, codebook_size=16, code_dim=4).eval()
    assert q.proj.out_channels == proj_out and q.groups == groups and q.out_channels == 12
    assert q.bits_per_position == pytest.approx(groups * 4)
    h = torch.randn(2, 6, 5, 7)
    out = q(h)
    assert out.quantized.shape == (2, 12, 5, 7) and out.codes.shape == (2, groups, 5, 7)
    assert torch.equal(q.encode(h), out.codes)
    assert torch.equal(q.decode(out.codes), out.quantized)
    z = q.proj(h).permute(0, 2, 3, 1)
    for g, book in enumerate(q.codebooks):
        # "dq": group g is its own d channels; "vq": every codebook sees the same d; "single": all M*d.
        rows = z[..., 4 * g : 4 * g + 4] if mode == "dq" else z
        assert torch.equal(out.codes[:, g], book.nearest(rows.reshape(-1, rows.shape[-1])).view(2, 5, 7))


def test_dq_projection_is_m_separate_1x1_convolutions():
    torch.manual_seed(0)
    q = QuantBottleneck(6, mode="dq", num_codebooks=3, codebook_size=8, code_dim=4).eval()
    h = torch.randn(2, 6, 4, 4)
    for g in range(3):
        conv = nn.Conv2d(6, 4, 1)
        conv.weight.data.copy_(q.proj.weight[4 * g : 4 * g + 4])
        conv.bias.data.copy_(q.proj.bias[4 * g : 4 * g + 4])
        rows = conv(h).permute(0, 2, 3, 1).reshape(-1, 4)
        assert torch.equal(q.encode(h)[:, g].flatten(), q.codebooks[g].nearest(rows))


def test_equal_codebook_parameters_and_projection_sizes():
    sizes = {}
    for mode in ("dq", "vq", "single"):
        q = QuantBottleneck(32, mode=mode, num_codebooks=5, codebook_size=16, code_dim=8)
        sizes[mode] = (sum(b.embed.numel() for b in q.codebooks), sum(p.numel() for p in q.parameters()))
    assert sizes["dq"][0] == sizes["vq"][0] == sizes["single"][0] == 5 * 16 * 8  # M*K*d everywhere
    assert sizes["dq"][1] == sizes["single"][1] == 32 * 40 + 40
    assert sizes["vq"][1] == 32 * 8 + 8  # one shared d-dim projection


def test_straight_through_gradient_and_latent_loss():
    torch.manual_seed(0)
    q = QuantBottleneck(3, mode="dq", num_codebooks=2, codebook_size=8, code_dim=2).train()
    h = torch.randn(4, 3, 3, 3, requires_grad=True)
    before = [b.embed.clone() for b in q.codebooks]
    out = q(h)
    z = q.proj(h).permute(0, 2, 3, 1).reshape(-1, 4)
    expected = sum(
        (before[g][out.codes[:, g].flatten()] - z[:, 2 * g : 2 * g + 2]).pow(2).mean() for g in range(2)
    )
    assert torch.allclose(out.latent_loss, expected)
    out.quantized.sum().backward()
    # d(sum q)/dz = 1 for every element: the gradient reaching h is the projection's column sums
    assert torch.allclose(h.grad, q.proj.weight.sum(0).view(1, 3, 1, 1).expand_as(h))
    assert all(b.embed.grad is None for b in q.codebooks)
    assert any(not torch.equal(a, b.embed) for a, b in zip(before, q.codebooks, strict=True))  # EMA moved


def test_probabilities_are_the_smoothed_counts():
    book = Codebook(2, 4)
    book.cluster_size.copy_(torch.tensor([3.0, 1.0, 0.0, 0.0]))
    p = book.probabilities()
    assert p.sum() == pytest.approx(1.0) and (p > 0).all()
    assert p[0] == pytest.approx(0.75, abs=1e-4)


@pytest.mark.parametrize(
    "kwargs", [{"mode": "pq"}, {"num_codebooks": 0}, {"codebook_size": 1}, {"decay": 1.0}]
)
def test_bad_arguments(kwargs):
    with pytest.raises(ModelError):
        QuantBottleneck(4, **kwargs)
