"""Output heads: the discretized logistic mixture is a distribution over 8-bit RGB, CE and means exact."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from dctq.common.errors import ModelError
from dctq.models.dq import heads


def test_red_channel_bins_sum_to_one():
    """With G and B pinned (narrowest logistics on their values, no coupling), exp(-nll) over the 256 values of
    R sums to the mass of G's and B's bins: R's 254 inner bins and two open edge bins cover the line."""
    torch.manual_seed(0)
    n_mix = 3
    out = torch.zeros(1, 10 * n_mix, 1, 1)
    out[:, :n_mix] = torch.randn(n_mix)[None, :, None, None]
    rest = out[:, n_mix:].view(1, 3, 3 * n_mix, 1, 1)
    rest[:, 0, :n_mix] = torch.randn(n_mix)[None, :, None, None] * 0.5
    rest[:, 0, n_mix : 2 * n_mix] = -2.0
    rest[:, 1, :n_mix] = 127 / 127.5 - 1  # G's and B's logistics centred on the bins of 127 and 128
    rest[:, 2, :n_mix] = 128 / 127.5 - 1
    rest[:, 1:, n_mix : 2 * n_mix] = -7.0
    pixels = torch.stack([torch.arange(256), torch.full((256,), 127), torch.full((256,), 128)], 1).view(
        256, 3, 1, 1
    )
    p = torch.exp(-heads.nll("mix", out.expand(256, -1, -1, -1), pixels, n_mix).double())
    half_bin = torch.tensor(math.exp(7) / 255, dtype=torch.float64)
    gb = (2 * torch.sigmoid(half_bin) - 1) ** 2  # the mass of G's and B's bins, the same in every component
    assert p.sum().item() == pytest.approx(gb.item(), rel=1e-5)


@pytest.mark.slow
def test_mixture_sums_to_one_over_every_colour():
    """exp(-nll) over all 256^3 colours of a 1x1 image sums to 1: the R -> G -> B coupling, the edge bins and
    the mixture weights together define a distribution (3 components, random parameters)."""
    torch.manual_seed(0)
    n_mix = 3
    out = torch.randn(1, 10 * n_mix, 1, 1) * 0.5
    out[:, n_mix : n_mix + 3 * 3 * n_mix] *= 1  # means around 0, log-scales around 0 (wide), random coeffs
    values = torch.arange(256)
    total = torch.zeros((), dtype=torch.float64)
    for r in values.split(32):
        grid = torch.stack(torch.meshgrid(r, values, values, indexing="ij"), -1).reshape(-1, 3)
        pixels = grid.view(-1, 3, 1, 1)
        nll = heads.nll("mix", out.expand(pixels.shape[0], -1, -1, -1), pixels, n_mix)
        total += torch.exp(-nll.double()).sum()
    assert total.item() == pytest.approx(1.0, abs=2e-3)


def test_cross_entropy_head_is_the_per_subpixel_cross_entropy():
    torch.manual_seed(0)
    out = torch.randn(2, 768, 3, 4)
    pixels = torch.randint(0, 256, (2, 3, 3, 4))
    logits = out.view(2, 3, 256, 3, 4)
    expected = torch.stack(
        [
            sum(
                F.cross_entropy(logits[b, c, :, i, j][None], pixels[b, c, i, j][None])
                for c, i, j in itertools.product(range(3), range(3), range(4))
            )
            for b in range(2)
        ]
    )
    assert torch.allclose(heads.nll("ce", out, pixels), expected, atol=1e-4)
    assert heads.reconstruction_loss("ce", out, pixels) == pytest.approx(
        float(expected.mean() / 36), rel=1e-5
    )


def test_mean_pixels_of_peaked_outputs_are_the_peaks():
    pixels = torch.randint(0, 256, (2, 3, 4, 4))
    ce = torch.full((2, 3, 256, 4, 4), -50.0).scatter_(2, pixels[:, :, None], 50.0).view(2, 768, 4, 4)
    assert torch.allclose(heads.mean_pixels("ce", ce), pixels.float(), atol=1e-3)
    n_mix = 2
    mix = torch.zeros(2, 10 * n_mix, 4, 4)
    rest = mix[:, n_mix:].view(2, 3, 3 * n_mix, 4, 4)
    rest[:, :, :n_mix] = heads.to_unit(pixels)[:, :, None]  # every component's mean on the pixel
    rest[:, :, n_mix : 2 * n_mix] = -7.0
    assert torch.allclose(heads.mean_pixels("mix", mix, n_mix), pixels.float(), atol=1e-3)
    # the narrowest logistic (scale e^-7, 4.3 scales per half bin) puts 97% of its mass on the true bin
    assert heads.nll("mix", mix, pixels, n_mix).max() < 0.03 * 48
    mse = heads.to_unit(pixels)
    assert torch.allclose(heads.mean_pixels("mse", mse), pixels.float(), atol=1e-4)
    assert heads.reconstruction_loss("mse", mse, pixels) < 1e-10


def test_heads_and_channels():
    assert [heads.head_channels(h) for h in heads.HEADS] == [3, 768, 100]
    with pytest.raises(ModelError, match="no likelihood"):
        heads.nll("mse", torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2, 2))
    with pytest.raises(ModelError, match="head must be one of"):
        heads.head_channels("gauss")
