"""Schedules: analytic derivatives, limits, betas, inverses, and the papers' closed forms."""

import math

import pytest
import torch

from discodiff.schedules import (
    SCHEDULES,
    CosineSchedule,
    GeometricSchedule,
    GeometricStdSchedule,
    LinearSchedule,
    LogLinearSchedule,
    SqrtSchedule,
)

ALL = [
    LinearSchedule(),
    CosineSchedule(),
    SqrtSchedule(),
    LogLinearSchedule(),
    GeometricSchedule(),
    GeometricStdSchedule(),
]
IDS = [type(s).__name__ for s in ALL]
T_INNER = torch.linspace(0.01, 0.98, 60, dtype=torch.float64)


@pytest.mark.parametrize("sched", ALL, ids=IDS)
def test_derivatives_match_autograd(sched):
    t = T_INNER.clone().requires_grad_(True)
    for value, deriv in [
        (sched.sigma_bar, sched.dsigma_bar),
        (sched.alpha_bar, sched.dalpha_bar),
        (sched.log_snr, sched.dlog_snr),
    ]:
        (g,) = torch.autograd.grad(value(t).sum(), t)
        torch.testing.assert_close(deriv(T_INNER), g, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("sched", ALL, ids=IDS)
def test_monotone_from_data_to_noise(sched):
    t = torch.linspace(0, 1, 201, dtype=torch.float64)
    ab = sched.alpha_bar(t)
    assert torch.all(ab[1:] <= ab[:-1])
    assert ab[0] > 0.999  # data (almost) at t = 0
    assert ab[-1] < 0.01  # noise at t = 1
    torch.testing.assert_close(sched.one_minus_alpha_bar(t), 1 - ab, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("sched", ALL, ids=IDS)
def test_betas_telescope_to_alpha_bar(sched):
    T = 50
    betas = sched.betas(T)
    assert betas.dtype == torch.float64 and betas.shape == (T,)
    assert torch.all((betas >= 0) & (betas <= 1))
    ab = sched.alpha_bars(T)
    torch.testing.assert_close(torch.cumprod(1 - betas, 0), ab[1:] / ab[0], rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("sched", ALL, ids=IDS)
def test_inverse_log_snr_round_trip(sched):
    lam = sched.log_snr(T_INNER)
    torch.testing.assert_close(sched.t_from_log_snr(lam), T_INNER, rtol=0, atol=1e-9)
    torch.testing.assert_close(sched.t_from_sigma_bar(sched.sigma_bar(T_INNER)), T_INNER, rtol=0, atol=1e-9)


def test_linear_matches_ddpm_betas():
    """With T = 1000 the VP linear schedule's betas run from about 1e-4 to 0.02 (Ho et al. 2020);
    each is beta(t) integrated over its step, so the first is 1.1e-4 (beta at the step's middle)."""
    betas = LinearSchedule().betas(1000)
    assert betas[0].item() == pytest.approx(1e-4 + 0.5 * 19.9e-6, rel=1e-3)
    assert betas[-1].item() == pytest.approx(0.02, rel=0.02)
    ab = LinearSchedule().alpha_bar(torch.tensor(1.0, dtype=torch.float64))
    assert ab.item() == pytest.approx(math.exp(-(0.1 + 0.5 * 19.9)))


def test_cosine_matches_nichol_dhariwal():
    s = 0.008
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    torch.testing.assert_close(CosineSchedule().alpha_bar(t), f / f[0])
    assert CosineSchedule().alpha_bar(torch.tensor(1.0, dtype=torch.float64)) < 1e-20


def test_sqrt_matches_diffusion_lm():
    s = 1e-4
    t = torch.linspace(0, 0.99, 12, dtype=torch.float64)
    expect = (1 - torch.sqrt(t + s)) / (1 - math.sqrt(s))
    torch.testing.assert_close(SqrtSchedule().alpha_bar(t), expect)
    assert SqrtSchedule().alpha_bar(torch.tensor(1.0, dtype=torch.float64)) == 0


def test_loglinear_and_geometric_closed_forms():
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    torch.testing.assert_close(LogLinearSchedule(eps=1e-3).one_minus_alpha_bar(t), (1 - 1e-3) * t)
    assert LogLinearSchedule(eps=0.0).alpha_bar(torch.tensor(1.0, dtype=torch.float64)) == 0
    torch.testing.assert_close(GeometricSchedule(1e-4, 20.0).sigma_bar(t), 1e-4 ** (1 - t) * 20.0**t)
    ve = GeometricStdSchedule(0.01, 50.0)
    ab = ve.alpha_bar(t)
    torch.testing.assert_close(torch.sqrt((1 - ab) / ab), 0.01 * 5000.0**t)


def test_bad_parameters_and_names_raise():
    with pytest.raises(ValueError, match="beta_min"):
        LinearSchedule(beta_min=2.0, beta_max=1.0)
    with pytest.raises(ValueError, match="eps"):
        LogLinearSchedule(eps=1.0)
    with pytest.raises(KeyError, match="did you mean 'cosine'"):
        SCHEDULES.get("cosin")
