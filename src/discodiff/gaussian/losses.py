r"""Gaussian diffusion loss terms: weighted denoising MSE and the variational bound's pieces.

All per-example terms are summed over data dimensions and returned in nats, ``(B,)``.

Variational bound (Ho et al. 2020, Eq. 5; Kingma et al. 2021, Eq. 11):

.. math::
    -\log p(x_0) \le \underbrace{D_{KL}(q(x_1|x_0)\,\|\,p(x_1))}_{\text{prior}}
    + \sum_{i=2}^{T} \underbrace{D_{KL}(q(x_{t_{i-1}}|x_{t_i},x_0)\,\|\,
      p_\theta(x_{t_{i-1}}|x_{t_i}))}_{\text{diffusion}}
    \underbrace{- \log p_\theta(x_0|x_{t_1})}_{\text{reconstruction}}

Its continuous-time limit replaces the sum by
:math:`-\tfrac12\int \lambda'(t)\,\|\epsilon-\hat\epsilon\|^2\,dt
= \tfrac12\int_{\lambda_{min}}^{\lambda_{max}}\|\epsilon-\hat\epsilon\|^2\,d\lambda`
(Kingma et al. 2021, Eq. 17 written in log-SNR), which is Song et al.'s likelihood weighting.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.special import log_ndtr

from ..utils import log1mexp, stratified_steps, sum_except_batch
from .process import GaussianProcess

if TYPE_CHECKING:
    from ..base import Batch
    from .precond import Denoised

LOG_2PI = math.log(2 * math.pi)


def eps_mse_weight(weighting: str, alpha: Tensor, sigma: Tensor, *, min_snr_gamma: float = 5.0) -> Tensor:
    r"""Per-example weight :math:`w(t)` on :math:`\|\epsilon-\hat\epsilon\|^2`.

    - ``"eps"``: 1, DDPM's :math:`L_{simple}` (Ho et al. 2020, Eq. 14).
    - ``"x0"``: :math:`1/\mathrm{SNR}`, i.e. the MSE on :math:`x_0`.
    - ``"v"``: :math:`((\alpha^2+\sigma^2)/\alpha)^2`, the MSE on v (Salimans & Ho 2022);
      :math:`1 + 1/\mathrm{SNR}` for VP.
    - ``"min_snr"``: :math:`\min(1, \gamma/\mathrm{SNR})`, min-SNR-:math:`\gamma` (Hang et al. 2023,
      Eq. 7, eps form).
    """
    snr = alpha**2 / sigma**2
    if weighting == "eps":
        return torch.ones_like(snr)
    if weighting == "x0":
        return 1 / snr
    if weighting == "v":
        return ((alpha**2 + sigma**2) / alpha) ** 2
    if weighting == "min_snr":
        return torch.clamp(min_snr_gamma / snr, max=1.0)
    raise ValueError(f"unknown weighting {weighting!r}; allowed: eps, x0, v, min_snr")


def normal_kl(mean1: Tensor, logvar1: Tensor, mean2: Tensor, logvar2: Tensor) -> Tensor:
    r"""Elementwise :math:`D_{KL}(\mathcal N(\mu_1,e^{l_1})\,\|\,\mathcal N(\mu_2,e^{l_2}))`."""
    return 0.5 * (
        logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2) - 1
    )


def gaussian_log_likelihood(x: Tensor, mean: Tensor, log_std: Tensor) -> Tensor:
    r"""Elementwise :math:`\log\mathcal N(x;\mu,e^{2\log s})`."""
    return -0.5 * LOG_2PI - log_std - 0.5 * ((x - mean) * torch.exp(-log_std)) ** 2


def log_normal_interval(a: Tensor, b: Tensor) -> Tensor:
    r""":math:`\log(\Phi(b) - \Phi(a))` for :math:`a \le b` (either may be infinite), stable in
    both tails: for :math:`a > 0` it uses :math:`\Phi(-a) - \Phi(-b)`."""
    upper = a > 0
    lo_arg = torch.where(upper, -b, a)
    hi_arg = torch.where(upper, -a, b)
    # An infinite end contributes exactly log Phi(-inf) = -inf or log Phi(inf) = 0; log_ndtr only
    # sees finite arguments, since its backward at +-inf is 0 * inf = NaN even where masked out.
    lo_inf, hi_inf = torch.isneginf(lo_arg), torch.isposinf(hi_arg)
    lo = torch.where(lo_inf, -math.inf, log_ndtr(torch.where(lo_inf, 0.0, lo_arg)))
    hi = torch.where(hi_inf, 0.0, log_ndtr(torch.where(hi_inf, 0.0, hi_arg)))
    return hi + log1mexp(lo - hi)


def discretized_gaussian_log_likelihood(x: Tensor, mean: Tensor, log_std: Tensor, levels: int) -> Tensor:
    r"""Elementwise log-probability of the level ``x`` under a discretized Gaussian.

    Ho et al. 2020, Eq. 13: data with ``levels`` values evenly spaced in [-1, 1]; each level owns
    the bin :math:`[x-\delta, x+\delta]`, :math:`\delta = 1/(\text{levels}-1)`, and the two end
    bins extend to :math:`\mp\infty`, so the probabilities over the levels sum to 1. Computed in
    float64.
    """
    if levels < 2:
        raise ValueError(f"a discretized decoder needs at least 2 levels, got {levels}")
    x, mean, log_std = (v.to(torch.float64) for v in (x, mean, log_std))
    delta = 1.0 / (levels - 1)
    inv_std = torch.exp(-log_std)
    a = torch.where(x < -1 + delta, -math.inf, (x - delta - mean) * inv_std)
    b = torch.where(x > 1 - delta, math.inf, (x + delta - mean) * inv_std)
    return log_normal_interval(a, b)


def reverse_log_variance(
    process: GaussianProcess, s: Tensor, t: Tensor, var_frac: Tensor | None, kind: str
) -> Tensor:
    r"""Log-variance of :math:`p_\theta(x_s|x_t)` for 0 < s < t (float64, per example or elementwise).

    ``"small"``: the posterior variance :math:`\tilde\sigma^2`; ``"large"``: the forward
    transition variance :math:`\sigma_{t|s}^2` (DDPM's two choices, Ho et al. 2020, Sec. 3.2);
    with a learned ``var_frac`` f: :math:`f\log\sigma_{t|s}^2 + (1-f)\log\tilde\sigma^2`.
    """
    _, _, post_var = process.posterior_coefficients(s, t)
    _, trans_var = process.transition(s, t)
    log_small, log_large = torch.log(post_var), torch.log(trans_var)
    if var_frac is not None:
        shape = (-1,) + (1,) * (var_frac.dim() - 1)
        f = var_frac.to(torch.float64)
        return f * log_large.reshape(shape) + (1 - f) * log_small.reshape(shape)
    if kind == "small":
        return log_small
    if kind == "large":
        return log_large
    raise ValueError(f"unknown reverse variance {kind!r}; allowed: small, large")


def diffusion_step_kl(
    process: GaussianProcess,
    x0: Tensor,
    x_t: Tensor,
    x0_hat: Tensor,
    s: Tensor,
    t: Tensor,
    log_var: Tensor,
) -> Tensor:
    r""":math:`D_{KL}(q(x_s|x_t,x_0)\,\|\,p_\theta(x_s|x_t))`, summed over dims, (B,) nats.

    :math:`p_\theta(x_s|x_t) = \mathcal N(\tilde\mu(x_t, \hat x_0), e^{\text{log\_var}})`: the
    posterior with :math:`\hat x_0` in place of :math:`x_0` (Ho et al. 2020, Eq. 7 and 11).
    """
    mean_q, var_q = process.posterior(x_t.double(), x0.double(), s, t)
    mean_p, _ = process.posterior(x_t.double(), x0_hat.double(), s, t)
    log_var = log_var.to(torch.float64)
    if log_var.dim() == 1:
        log_var = log_var.reshape((-1,) + (1,) * (x0.dim() - 1))
    kl = normal_kl(mean_q, torch.log(var_q), mean_p, log_var)
    return sum_except_batch(kl)


def reconstruction_nll(x0: Tensor, x0_hat: Tensor, log_std: Tensor, levels: int | None) -> Tensor:
    r""":math:`-\log p_\theta(x_0|x_{t_1})`, (B,) nats: a Gaussian around :math:`\hat x_0`,
    discretized over ``levels`` for quantized data (a density otherwise)."""
    log_std = log_std.to(torch.float64).reshape((-1,) + (1,) * (x0.dim() - 1))
    if levels is None:
        ll = gaussian_log_likelihood(x0.double(), x0_hat.double(), log_std)
    else:
        ll = discretized_gaussian_log_likelihood(x0, x0_hat, log_std, levels)
    return -sum_except_batch(ll)


def log_snr_diffusion_term(eps: Tensor, eps_hat: Tensor, weight: Tensor | float) -> Tensor:
    r"""One Monte Carlo term of the continuous-time diffusion loss, (B,) nats.

    :math:`\tfrac12\int_{\lambda_{min}}^{\lambda_{max}}\|\epsilon-\hat\epsilon\|^2\,d\lambda`
    (Kingma et al. 2021, Eq. 17 in log-SNR) estimated by :math:`\tfrac12\,w\,\|\epsilon-\hat\epsilon\|^2`,
    where ``weight`` w is the log-SNR measure the sample stands for: the width of its stratum, or
    :math:`|\lambda'(t)|/p(t)` for a time drawn with density p. ``weight``: float or (B,).
    """
    return 0.5 * weight * sum_except_batch((eps - eps_hat) ** 2)


def prior_kl(process: GaussianProcess, x0: Tensor, t_max: float) -> Tensor:
    r""":math:`D_{KL}(q(x_{t_{max}}|x_0)\,\|\,\mathcal N(0, s_{prior}^2 I))`, (B,) nats."""
    t = torch.full((x0.shape[0],), t_max, dtype=torch.float64, device=x0.device)
    alpha, sigma = process.alpha_sigma(t)
    shape = (-1,) + (1,) * (x0.dim() - 1)
    mean = alpha.reshape(shape) * x0.double()
    logvar = torch.log(sigma**2).reshape(shape).expand_as(mean)
    prior_logvar = torch.full_like(mean, 2 * math.log(process.prior_std(t_max)))
    return sum_except_batch(normal_kl(mean, logvar, torch.zeros_like(mean), prior_logvar))


def discrete_time_bound(
    process: GaussianProcess,
    x0: Tensor,
    timesteps: int,
    denoise: Callable[[Tensor, Tensor], Denoised],
    batch: Batch,
    reverse_variance: str,
    samples: int = 0,
) -> Tensor:
    r"""The bound's diffusion part in discrete time, :math:`\sum_{i=2}^{T} D_{KL}(q(x_{t_{i-1}}|x_{t_i},
    x_0)\,\|\,p_\theta(x_{t_{i-1}}|x_{t_i}))` with :math:`t_i = i/T` (Ho et al. 2020, Eq. 5), every
    term at one draw :math:`x_{t_i} \sim q(x_{t_i}|x_0)` from ``batch``'s generator; (B,) nats.
    With ``samples`` k in 1 .. T - 2, the sum is estimated without bias from k stratified steps
    per example (:func:`~discodiff.utils.stratified_steps`; one offset per example from
    ``batch``'s generator); 0 sums every step.

    ``denoise(x_t, t)`` gives :math:`\hat x_0` (and the learned variance, if any) of
    :func:`reverse_log_variance`'s ``reverse_variance``."""
    B = x0.shape[0]
    steps, weight = stratified_steps(
        timesteps, samples, lambda: batch.rand(dtype=torch.float64), B, x0.device
    )
    total = torch.zeros(B, dtype=torch.float64, device=x0.device)
    for i in steps:
        t = i / timesteps
        s = t - 1.0 / timesteps
        x_t = process.marginal(x0, t, batch.randn(*x0.shape[1:], dtype=x0.dtype))
        d = denoise(x_t, t)
        log_var = reverse_log_variance(process, s, t, d.var_frac, reverse_variance)
        total += diffusion_step_kl(process, x0, x_t, d.x0, s, t, log_var)
    return total * weight


def log_snr_bound(
    process: GaussianProcess,
    x0: Tensor,
    log_snr_range: tuple[float, float],
    samples: int,
    eps_hat: Callable[[Tensor, Tensor], Tensor],
    batch: Batch,
) -> Tensor:
    r"""The bound's diffusion part in continuous time,
    :math:`\tfrac12\int_{\lambda_{min}}^{\lambda_{max}}\|\epsilon-\hat\epsilon\|^2\,d\lambda` (Kingma et
    al. 2021, Eq. 17), estimated with ``samples`` log-SNR values stratified over the range, one
    offset and one :math:`\epsilon` per stratum and example from ``batch``'s generator; (B,) nats.

    ``log_snr_range`` = :math:`(\lambda_{min}, \lambda_{max})`, the log-SNR at the largest and the
    smallest time; ``eps_hat(x_t, t)`` the network's :math:`\hat\epsilon`."""
    lam_min, lam_max = log_snr_range
    width = (lam_max - lam_min) / samples
    total = torch.zeros(x0.shape[0], dtype=torch.float64, device=x0.device)
    for k in range(samples):
        u = (k + batch.rand(dtype=torch.float64)) / samples
        t = process.schedule.t_from_log_snr(lam_max - u * (lam_max - lam_min))
        eps = batch.randn(*x0.shape[1:], dtype=x0.dtype)
        total += log_snr_diffusion_term(eps, eps_hat(process.marginal(x0, t, eps), t), width)
    return total
