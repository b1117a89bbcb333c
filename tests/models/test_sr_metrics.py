"""PSNR / SSIM on Y as the SR literature computes them, checked against direct definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dctq.common.errors import DctqError
from dctq.models.sr.metrics import psnr, rgb_to_y, score_images, ssim, to_uint8_image


def test_y_is_bt601_studio_swing():
    white, black = torch.ones(3, 1, 1), torch.zeros(3, 1, 1)
    assert float(rgb_to_y(white)) == pytest.approx(235.0, abs=1e-3)
    assert float(rgb_to_y(black)) == 16.0
    red = torch.tensor([1.0, 0.0, 0.0]).reshape(3, 1, 1)
    assert float(rgb_to_y(red)) == pytest.approx(16 + 65.481)


def test_psnr_of_a_constant_y_offset_and_the_border_crop():
    hr = torch.full((3, 20, 20), 0.5)
    sr = hr.clone()
    sr[:, 2:-2, 2:-2] += 10 / 255  # Y moves by 10 * (65.481 + 128.553 + 24.966) / 255 inside the border
    dy = 10 * sum((65.481, 128.553, 24.966)) / 255
    assert float(psnr(sr, hr, crop=2)) == pytest.approx(
        10 * math.log10(255**2 / dy**2), rel=1e-6
    )  # float32 images
    assert float(psnr(sr, hr, crop=0)) > float(psnr(sr, hr, crop=2))  # the untouched border counts
    assert math.isinf(float(psnr(hr, hr)))
    with pytest.raises(DctqError, match="leaves nothing"):
        psnr(sr, hr, crop=10)


def _ssim_reference(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM by its definition, one 11x11 Gaussian window position at a time (the MATLAB code's formula)."""
    g = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for i in range(a.shape[0] - 10):
        for j in range(a.shape[1] - 10):
            pa, pb = a[i : i + 11, j : j + 11], b[i : i + 11, j : j + 11]
            ma, mb = (w * pa).sum(), (w * pb).sum()
            va, vb = (w * pa * pa).sum() - ma**2, (w * pb * pb).sum() - mb**2
            cov = (w * pa * pb).sum() - ma * mb
            values.append(((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    return float(np.mean(values))


def test_ssim_matches_the_windowed_definition():
    gen = torch.Generator().manual_seed(0)
    hr = torch.rand(3, 24, 26, generator=gen)
    sr = (hr + 0.1 * torch.randn(3, 24, 26, generator=gen)).clamp(0, 1)
    got = float(ssim(sr, hr, crop=2))
    ya, yb = rgb_to_y(sr)[0, 2:-2, 2:-2].numpy(), rgb_to_y(hr)[0, 2:-2, 2:-2].numpy()
    assert got == pytest.approx(_ssim_reference(ya, yb), rel=1e-9)
    assert float(ssim(hr, hr)) == pytest.approx(1.0)


def test_scores_round_the_output_to_8_bits_first():
    hr = torch.full((3, 16, 16), 100 / 255)
    sr = hr + 0.4 / 255  # rounds back onto the HR values
    assert to_uint8_image(sr).equal(torch.round(hr * 255) / 255)
    assert math.isinf(score_images("a", sr, hr, crop=1).psnr)
