"""CDCD's time warp: a monotone CDF from [0, 1] onto the sigma range, its inverse sampling, its fit.

Statistical tests reject at level KS_LEVEL = 0.01 with fixed seeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import chisquare, kstest

from discodiff.data import DataInfo
from discodiff.embedding import CDCDConfig, TimeWarp, build_cdcd
from discodiff.embedding.time_warp import WARP_HEIGHT_FLOOR, WARP_PARAM_SCALE, WARP_WIDTH_FLOOR

KS_LEVEL = 0.01
F64 = torch.float64


def random_warp(bins: int = 20, seed: int = 0) -> TimeWarp:
    warp = TimeWarp(bins, initial_total=3.0)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        warp.width_params.copy_(2 * torch.randn(bins, generator=g) / WARP_PARAM_SCALE)
        warp.height_params.copy_(3 * torch.randn(bins, generator=g) / WARP_PARAM_SCALE)
        warp.offset_param.fill_(0.7 / WARP_PARAM_SCALE)
    return warp


def test_fresh_warp_is_the_identity() -> None:
    warp = TimeWarp(50, initial_total=4.0)
    t = torch.linspace(0, 1, 101, dtype=F64)
    torch.testing.assert_close(warp.cdf(t), t)
    torch.testing.assert_close(warp.inverse(t), t)
    torch.testing.assert_close(warp.unnormalized(t), 4.0 * t)  # from 0 to the initial total


def test_cdf_is_monotone_and_inverse_round_trips() -> None:
    warp = random_warp()
    t = torch.linspace(0, 1, 20001, dtype=F64)
    F = warp.cdf(t)
    assert (F[1:] > F[:-1]).all(), "strictly increasing (floors keep every piece's slope positive)"
    assert float(F[0]) == 0.0 and float(F[-1]) == pytest.approx(1.0, abs=1e-15)
    torch.testing.assert_close(warp.inverse(F), t, rtol=0, atol=1e-12)
    u = torch.rand(1000, dtype=F64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(warp.cdf(warp.inverse(u)), u, rtol=0, atol=1e-12)
    # density = dF/dt on every grid interval inside a piece, and it integrates to 1 over the pieces
    tau, cum, widths, heights = (v.detach() for v in warp.knots())
    inside = torch.searchsorted(tau, t[:-1], right=True) == torch.searchsorted(tau, t[1:], right=True)
    mid = 0.5 * (t[1:] + t[:-1])
    slope = warp.density(mid) * (t[1] - t[0])
    torch.testing.assert_close(slope[inside], (F[1:] - F[:-1])[inside], rtol=1e-6, atol=1e-12)
    assert inside.sum() >= len(inside) - warp.bins
    assert float((warp.density(tau[:-1] + 0.5 * widths) * widths).sum()) == pytest.approx(1.0, abs=1e-12)
    # unnormalized = offset + total * F
    torch.testing.assert_close(warp.unnormalized(t).detach(), 0.7 + cum[-1] * F)
    # floors: every piece at least 0.1 / bins wide, every height at least 1e-3 nats
    assert (widths >= WARP_WIDTH_FLOOR / warp.bins - 1e-15).all() and (heights >= WARP_HEIGHT_FLOOR).all()


def test_warp_maps_the_unit_interval_onto_the_sigma_range() -> None:
    model = build_cdcd(
        CDCDConfig(sigma_min=0.5, sigma_max=80.0, warp_bins=16),
        DataInfo((8,), kind="tokens", vocab_size=5),
        lambda spec: torch.nn.Identity(),
    )
    with torch.no_grad():
        model.warp.height_params.copy_(torch.randn(16, generator=torch.Generator().manual_seed(3)) / 10)
    u = torch.linspace(0, 1, 257, dtype=F64)
    _, sigma = model.process.alpha_sigma(model.warp.inverse(u))
    assert float(sigma[0]) == pytest.approx(0.5, rel=1e-12) and float(sigma[-1]) == pytest.approx(
        80.0, rel=1e-12
    )
    assert (sigma[1:] > sigma[:-1]).all()
    grid = model.time_grid(10)  # the sampling grid: descending from 1 to 0 at u = 1 - j / N
    assert grid[0] == 1.0 and grid[-1] == 0.0 and (grid[1:] < grid[:-1]).all()
    torch.testing.assert_close(model.warp.cdf(grid), torch.linspace(1, 0, 11, dtype=F64), rtol=0, atol=1e-12)


def test_inverse_samples_follow_the_warp_density() -> None:
    """Inverse-CDF draws of U[0, 1] against the warp's own CDF: Kolmogorov-Smirnov, and a chi-square
    over the pieces against their probability masses (both at level 0.01)."""
    warp = random_warp(bins=12, seed=4)
    u = torch.rand(5000, dtype=F64, generator=torch.Generator().manual_seed(0))
    t = warp.inverse(u).numpy()
    result = kstest(t, lambda s: warp.cdf(torch.from_numpy(np.asarray(s, dtype=np.float64))).numpy())
    assert result.pvalue > KS_LEVEL
    tau, cum, _, _ = (v.detach() for v in warp.knots())
    counts = np.histogram(t, bins=tau.numpy())[0]
    expected = (cum[1:] - cum[:-1]).numpy() / float(cum[-1]) * len(t)
    keep = expected >= 5
    others = [counts[~keep].sum()] if (~keep).any() else []
    other_expected = [expected[~keep].sum()] if (~keep).any() else []
    stat = chisquare(np.r_[counts[keep], others], np.r_[expected[keep], other_expected])
    assert stat.pvalue > KS_LEVEL


def test_fit_recovers_a_loss_curve() -> None:
    """Fit to noisy observations of l(t) = 0.4 + 3 G(t) (G a smooth CDF, flat near t = 1) with t
    drawn from the warp itself, as in training: the fitted F~ is within 0.08 nats of l and the
    normalized F within 0.03 of G everywhere (measured: 0.063 and 0.026, both at the flat end,
    which the warp rarely samples)."""
    torch.manual_seed(6)

    def target_cdf(t: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(12 * (t - 0.35))
        return (s - torch.sigmoid(torch.tensor(-4.2))) / (
            torch.sigmoid(torch.tensor(7.8)) - torch.sigmoid(torch.tensor(-4.2))
        )

    warp = TimeWarp(40, initial_total=2.0)
    opt = torch.optim.Adam(warp.parameters(), lr=0.05 / WARP_PARAM_SCALE)
    decay = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 1000)
    for _ in range(1000):
        t = warp.inverse(torch.rand(256, dtype=F64))
        observed = 0.4 + 3 * target_cdf(t) + 0.1 * torch.randn_like(t)
        loss = warp.fit_loss(t, observed).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        decay.step()
    grid = torch.linspace(0, 1, 401, dtype=F64)
    with torch.no_grad():
        assert (warp.unnormalized(grid) - (0.4 + 3 * target_cdf(grid))).abs().max() < 0.08
        assert (warp.cdf(grid) - target_cdf(grid)).abs().max() < 0.03


def test_warp_validation() -> None:
    with pytest.raises(ValueError, match="bins >= 1 and initial_total > 0"):
        TimeWarp(0)
