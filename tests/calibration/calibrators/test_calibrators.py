"""Calibrators against closed forms and brute-force searches on known tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dctq.calibration.calibrators.entropy import EntropyCalibrator, kl_divergences
from dctq.calibration.calibrators.max import MaxCalibrator
from dctq.calibration.calibrators.mse import MseCalibrator
from dctq.calibration.calibrators.percentile import PercentileCalibrator
from dctq.calibration.calibrators.registry import CALIBRATORS, calibrator_options, create_calibrator
from dctq.common.errors import QuantizationError


def _gaussian_with_outliers(seed: int = 0, n: int = 200_000) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=g)
    x[:20] = torch.linspace(8.0, 30.0, 20)  # a few far outliers, as activations have
    return x


# ---------------------------------------------------------------- max


def test_max_per_tensor_is_exact_running_max():
    cal = MaxCalibrator()
    a, b = torch.rand(16), torch.rand(16) * 3 - 2
    cal.observe(a)
    cal.observe(b)
    assert cal.compute_amax().item() == torch.cat([a, b]).abs().max().item()


def test_max_per_channel_along_axis():
    w = torch.randn(5, 3, 3, 3)
    cal = MaxCalibrator(axis=0)
    cal.observe(w)
    torch.testing.assert_close(cal.compute_amax(), w.abs().amax(dim=(1, 2, 3)), rtol=0, atol=0)
    cal1 = MaxCalibrator(axis=1)
    cal1.observe(w)
    assert cal1.compute_amax().shape == (3,)


def test_max_channel_count_change_and_no_data_raise():
    cal = MaxCalibrator(axis=0)
    with pytest.raises(QuantizationError, match="no data"):
        cal.compute_amax()
    cal.observe(torch.ones(4, 2))
    with pytest.raises(QuantizationError, match="channels"):
        cal.observe(torch.ones(3, 2))
    cal.reset()
    assert not cal.observed


# ---------------------------------------------------------------- histogram collection


def test_histogram_grows_by_whole_bins_and_keeps_counts():
    cal = PercentileCalibrator(num_bins=100)
    cal.observe(torch.linspace(0, 1, 1001))
    cal.observe(torch.tensor([2.5, -0.25]))
    counts, edges = cal.histogram()
    assert counts.sum() == 1003
    np.testing.assert_allclose(edges[1] - edges[0], 0.01, rtol=1e-6)
    assert edges[-1] >= 2.5 and edges[-1] < 2.5 + 0.011
    assert counts[-1] >= 1  # 2.5 lands in the last bin
    assert counts[25] >= 1  # |-0.25| joined the first batch's bins


def test_histogram_merges_bins_when_range_explodes():
    cal = PercentileCalibrator(num_bins=64)
    cal.observe(torch.full((10,), 1e-3))
    cal.observe(torch.tensor([100.0]))
    counts, edges = cal.histogram()
    assert counts.size <= 8 * 64 and counts.sum() == 11 and edges[-1] >= 100.0


def test_histogram_calibrators_refuse_per_channel_and_nan():
    with pytest.raises(QuantizationError, match="per tensor"):
        EntropyCalibrator(axis=0)
    cal = MseCalibrator()
    with pytest.raises(QuantizationError, match="non-finite"):
        cal.observe(torch.tensor([1.0, float("nan")]))


def test_all_zero_input_gives_zero_amax():
    for name in ("percentile", "entropy", "mse"):
        cal = create_calibrator(name)
        cal.observe(torch.zeros(100))
        assert cal.compute_amax().item() == 0.0


# ---------------------------------------------------------------- percentile


@pytest.mark.parametrize("p", [90.0, 99.0, 99.99])
def test_percentile_matches_numpy_within_one_bin(p):
    x = _gaussian_with_outliers()
    cal = PercentileCalibrator(percentile=p)
    for chunk in x.chunk(4):
        cal.observe(chunk)
    _, edges = cal.histogram()
    expected = np.percentile(x.abs().numpy(), p)
    assert abs(cal.compute_amax().item() - expected) <= (edges[1] - edges[0])


def test_percentile_rejects_bad_value():
    with pytest.raises(QuantizationError, match="percentile"):
        PercentileCalibrator(percentile=0)


# ---------------------------------------------------------------- entropy


def _reference_kl(bins: np.ndarray, nbins: int, start_bin: int) -> tuple[np.ndarray, np.ndarray]:
    """The legacy TensorRT/pytorch-quantization loop, written out per threshold (no shortcuts)."""
    total = bins.sum()
    ths, kls = [], []
    for i in range(start_bin, bins.size + 1):
        p = bins[:i].copy()
        p[i - 1] += bins[i:].sum()
        groups = np.digitize(np.arange(i), np.linspace(0, i, nbins + 1)) - 1
        nonzero = bins[:i] != 0
        q = np.zeros(i)
        for k in np.unique(groups):
            members = (groups == k) & nonzero
            if members.any():
                q[members] = bins[:i][groups == k].sum() / members.sum()
        assert abs(p.sum() - total) < 1e-6
        p, q = p / p.sum(), q / q.sum()
        mask = p > 0
        kl = np.inf if (q[mask] == 0).any() else float(np.sum(p[mask] * np.log(p[mask] / q[mask])))
        ths.append(i)
        kls.append(kl)
    return np.array(ths), np.array(kls)


def test_entropy_divergences_equal_the_per_threshold_loop():
    x = _gaussian_with_outliers(1)
    cal = EntropyCalibrator(num_bins=384)
    cal.observe(x)
    counts, _ = cal.histogram()
    counts[0] = counts[1]
    ths, kl = kl_divergences(counts, 128, start_bin=128)
    ref_ths, ref_kl = _reference_kl(counts, 128, 128)
    np.testing.assert_array_equal(ths, ref_ths)
    finite = np.isfinite(ref_kl)
    np.testing.assert_array_equal(np.isfinite(kl), finite)
    np.testing.assert_allclose(kl[finite], ref_kl[finite], rtol=1e-7, atol=1e-10)


def test_entropy_clips_outliers_and_matches_brute_force_threshold():
    x = _gaussian_with_outliers(2)
    cal = EntropyCalibrator(num_bins=512)
    cal.observe(x)
    amax = cal.compute_amax().item()
    counts, edges = cal.histogram()
    counts[0] = counts[1]
    ths, kl = _reference_kl(counts, 128, 128)
    best = ths[len(kl) - 1 - int(np.argmin(kl[::-1]))]
    assert amax == pytest.approx(edges[best], rel=1e-6)
    # Far below the outliers at 30, above the bulk of the Gaussian.
    assert 2.5 < amax < 0.5 * x.abs().max().item()


def test_entropy_unsigned_uses_twice_the_levels():
    x = _gaussian_with_outliers(3).abs()
    signed, unsigned = EntropyCalibrator(bits=4), EntropyCalibrator(bits=4, unsigned=True)
    signed.observe(x)
    unsigned.observe(x)
    assert unsigned.compute_amax() >= signed.compute_amax()


# ---------------------------------------------------------------- mse


def _fq(x: torch.Tensor, amax: float, qmax: int) -> torch.Tensor:
    s = amax / qmax
    return torch.clamp(torch.round(x / s), -qmax, qmax) * s


@pytest.mark.parametrize("bits", [8, 4])
def test_mse_is_close_to_a_brute_force_grid_search(bits):
    x = _gaussian_with_outliers(4, n=50_000)
    cal = MseCalibrator(bits=bits, num_bins=1024)
    cal.observe(x)
    amax = cal.compute_amax().item()
    qmax = 2 ** (bits - 1) - 1
    grid = np.linspace(0.05, x.abs().max().item(), 300)
    errors = [float(((_fq(x, a, qmax) - x) ** 2).mean()) for a in grid]
    best = float(np.min(errors))
    chosen = float(((_fq(x, amax, qmax) - x) ** 2).mean())
    assert chosen <= best * 1.02
    if bits == 4:  # 15 levels cannot afford the outliers' range; 255 can
        assert amax < 6.0


def test_lower_bit_mse_clips_harder():
    x = _gaussian_with_outliers(5)
    a8, a3 = MseCalibrator(bits=8), MseCalibrator(bits=3)
    a8.observe(x)
    a3.observe(x)
    assert a3.compute_amax() < a8.compute_amax()


# ---------------------------------------------------------------- registry


def test_registry_names_and_options():
    assert set(CALIBRATORS) == {"max", "percentile", "entropy", "mse"}
    assert calibrator_options("percentile") == {"percentile": 99.99, "num_bins": 2048}
    cal = create_calibrator("percentile", bits=8, percentile=99.0)
    assert isinstance(cal, PercentileCalibrator) and cal.percentile == 99.0
    with pytest.raises(QuantizationError, match="Did you mean entropy"):
        create_calibrator("entropi")
    with pytest.raises(QuantizationError, match="no option 'percentile'"):
        create_calibrator("entropy", percentile=99.0)
    with pytest.raises(
        QuantizationError, match=r"calibrator 'max' takes no option 'a', 'b'; its options are none$"
    ):
        create_calibrator("max", b=1, a=2)
