"""Gaussian forward processes against brute force: iterated transitions, Gaussian conditioning,
parameterization round trips, SDE coefficients."""

import itertools

import pytest
import torch

from discodiff.gaussian.process import PREDICTIONS, VEProcess, VPProcess, from_x0_eps, to_x0_eps
from discodiff.schedules import CosineSchedule, GeometricStdSchedule, LinearSchedule

PROCS = [VPProcess(LinearSchedule()), VPProcess(CosineSchedule()), VEProcess(GeometricStdSchedule())]
IDS = ["vp-linear", "vp-cosine", "ve-geometric"]


def _t(v):
    return torch.as_tensor(v, dtype=torch.float64).reshape(-1)


@pytest.mark.parametrize("proc", PROCS, ids=IDS)
def test_iterated_one_step_transitions_match_marginal(proc):
    """Composing q(x_{t_i} | x_{t_{i-1}}) over T steps gives q(x_t | x_0): exactly in the moments,
    and by Monte Carlo through the sampling functions."""
    T = 40
    grid = torch.linspace(0, 0.97, T + 1, dtype=torch.float64)
    mean_coef, var = torch.ones(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.tensor([[1.5, -0.5]], dtype=torch.float64).repeat(20_000, 1)
    x = x0.clone()
    for s, t in itertools.pairwise(grid):
        a_ts, var_ts = proc.transition(_t(s), _t(t))
        mean_coef, var = a_ts * mean_coef, a_ts**2 * var + var_ts
        x = a_ts * x + torch.sqrt(var_ts) * torch.randn(x.shape, generator=gen, dtype=torch.float64)
    alpha, sigma = proc.alpha_sigma(_t(grid[-1]))
    torch.testing.assert_close(mean_coef / proc.alpha_sigma(_t(0.0))[0], alpha, rtol=1e-9, atol=0)
    torch.testing.assert_close(torch.sqrt(var), sigma, rtol=1e-6, atol=1e-9)
    direct = proc.marginal(
        x0, _t(grid[-1]).expand(len(x0)), torch.randn(x0.shape, generator=gen, dtype=torch.float64)
    )
    for sample in (x, direct):  # 20k samples: 4.5 standard errors
        se = float(sigma) / 20_000**0.5
        torch.testing.assert_close(sample.mean(0), (alpha * x0[0]).to(sample.dtype), atol=4.5 * se, rtol=0)
        torch.testing.assert_close(sample.std(0), sigma.expand(2), rtol=0.03, atol=0)


@pytest.mark.parametrize("proc", PROCS, ids=IDS)
def test_posterior_equals_gaussian_conditioning(proc):
    """q(x_s | x_t, x_0) from the joint Gaussian of (x_s, x_t) given x_0 (Schur complement)."""
    gen = torch.Generator().manual_seed(1)
    for s_val, t_val in [(0.05, 0.1), (0.2, 0.9), (0.5, 0.51), (0.0, 0.3)]:
        s, t = _t(s_val), _t(t_val)
        x0 = torch.randn(1, 3, generator=gen, dtype=torch.float64)
        x_t = torch.randn(1, 3, generator=gen, dtype=torch.float64)
        a_s, sig_s = proc.alpha_sigma(s)
        a_t, _ = proc.alpha_sigma(t)
        a_ts, var_ts = proc.transition(s, t)
        c_ss, c_st, c_tt = sig_s**2, a_ts * sig_s**2, a_ts**2 * sig_s**2 + var_ts
        mean = a_s * x0 + c_st / c_tt * (x_t - a_t * x0)
        var = c_ss - c_st**2 / c_tt
        got_mean, got_var = proc.posterior(x_t, x0, s, t)
        torch.testing.assert_close(got_mean, mean, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(got_var.reshape(-1), var.reshape(-1), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("proc", PROCS, ids=IDS)
@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_parameterizations_round_trip(proc, prediction):
    gen = torch.Generator().manual_seed(2)
    t = torch.tensor([0.01, 0.3, 0.7, 0.95], dtype=torch.float64)
    x0 = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    eps = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    alpha, sigma = (c[:, None] for c in proc.alpha_sigma(t))
    x_t = alpha * x0 + sigma * eps
    out = from_x0_eps(prediction, x0, eps, alpha, sigma)
    x0_back, eps_back = to_x0_eps(prediction, out, x_t, alpha, sigma)
    torch.testing.assert_close(x0_back, x0, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(eps_back, eps, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("proc", PROCS, ids=IDS)
def test_sde_coefficients_generate_the_marginals(proc):
    """f = alpha'/alpha, and the variance ODE d sigma^2/dt = 2 f sigma^2 + g^2 holds (checked with
    central differences of the marginal)."""
    t = torch.linspace(0.05, 0.9, 18, dtype=torch.float64)
    h = 1e-6
    f, g2 = proc.drift_diffusion(t)
    a_p, s_p = proc.alpha_sigma(t + h)
    a_m, s_m = proc.alpha_sigma(t - h)
    _, sigma = proc.alpha_sigma(t)
    torch.testing.assert_close(f, (torch.log(a_p) - torch.log(a_m)) / (2 * h), rtol=1e-5, atol=1e-7)
    dvar = (s_p**2 - s_m**2) / (2 * h)
    torch.testing.assert_close(dvar, 2 * f * sigma**2 + g2, rtol=1e-5, atol=1e-7)
    c = proc.coefficients(t)
    torch.testing.assert_close(c.dalpha, (a_p - a_m) / (2 * h), rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(c.dsigma, (s_p - s_m) / (2 * h), rtol=1e-5, atol=1e-8)


def test_vp_linear_sde_is_songs():
    """VP SDE: f = -beta(t)/2, g^2 = beta(t) with beta(t) = 0.1 + 19.9 t (Song et al. 2021)."""
    t = torch.linspace(0, 1, 5, dtype=torch.float64)
    f, g2 = VPProcess(LinearSchedule()).drift_diffusion(t[1:])
    beta = 0.1 + 19.9 * t[1:]
    torch.testing.assert_close(f, -beta / 2)
    torch.testing.assert_close(g2, beta)


def test_prior_std():
    assert VPProcess(LinearSchedule()).prior_std() == pytest.approx(1.0)
    assert VEProcess(GeometricStdSchedule(0.01, 50.0)).prior_std() == pytest.approx((1 + 50.0**2) ** 0.5)
