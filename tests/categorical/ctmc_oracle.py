"""Exact continuous-time quantities on the enumerable length-3, K = 3 distribution of
:mod:`.sequence_oracle`: oracle networks for every parameterization, the ELBO by quadrature over t
with exact enumeration over x_t, and the exact output distribution of every CTMC sampler."""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
from scipy.stats import poisson
from torch import Tensor

from discodiff.categorical import ContinuousTimeMethod, Transition
from discodiff.categorical.continuous_time import LAST_TIME

from .sequence_oracle import K, L, SequenceOracle, all_sequences

F64 = torch.float64


def posterior_net(
    oracle: SequenceOracle, transition: Transition, *, form: str = "average", noise: float = 0.0
):
    """``net(x_t, t, cond)`` giving the exact per-token posterior logits (``form="average"``), or the
    :math:`\\tilde p \\propto p(x_0^i|x_t)/q(x_t^i|x_0^i)` that makes the joint form exact
    (``"d3pm"``). ``noise`` > 0 adds a fixed smooth perturbation (a function of the position and
    the token at it), giving a continuous-in-t network that is not the oracle."""
    perturbation = noise * torch.sin(torch.arange(L * transition.num_states * K, dtype=F64) * 1.7)
    perturbation = perturbation.reshape(L, transition.num_states, K)

    def net(x_t: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        t64 = t.double()
        out = oracle.posterior(transition, x_t, t64)
        if form == "d3pm":
            log_lik = transition.log_likelihood(x_t, 0.0, t64, dtype=F64)[..., :K]
            out = torch.where(log_lik > -math.inf, out - log_lik, -math.inf)
        return out + perturbation[torch.arange(L), x_t]

    return net


def score_net(oracle: SequenceOracle, transition, *, scale_by_sigma: bool = False):
    """SEDD's network with the exact marginal log-ratios over the data ids (shifted back by
    :math:`\\log(e^\\Delta - 1) + \\log K` for ``scale_by_sigma``)."""

    def net(x_t: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        t64 = t.double().clamp(max=LAST_TIME)
        log_ratio = transition.log_ratios(x_t, oracle.posterior(transition, x_t, t64), t64)[..., :K]
        if scale_by_sigma:
            log_keep, log_move = transition.log_keep_move(0.0, t64, x_t)
            log_ratio = log_ratio + (log_move - log_keep)[:, None, None] + math.log(K)
        return torch.where(torch.isfinite(log_ratio), log_ratio, 0.0)

    return net


def prior_mismatch(transition: Transition, oracle: SequenceOracle) -> float:
    """KL(q_1 || p_1) between the true marginal at t = 1 and the prior, over all S^3 states."""
    states = all_sequences(transition.num_states)
    log_q1 = transition.log_marginal(oracle.sequences, 1.0, dtype=F64)  # (27, L, S)
    per_x0 = sum(log_q1[:, j, states[:, j]] for j in range(L))  # (27, S^3)
    log_marg = torch.logsumexp(oracle.log_table[:, None] + per_x0, dim=0)
    log_prior = transition.log_prior()
    log_p1 = sum(log_prior[states[:, j]] for j in range(L))
    q = log_marg.exp()
    return float((q * torch.where(q > 0, log_marg - log_p1, 0.0)).sum())


def gauss_nodes(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre on [0, 1] after t = (1 - cos(pi u)) / 2 (nodes crowd both ends), rounded
    to float32 so that the oracle networks (which see float32 times) are exact."""
    u, w = np.polynomial.legendre.leggauss(n)
    u, w = (u + 1) / 2, w / 2
    t = ((1 - np.cos(np.pi * u)) / 2).astype(np.float32)
    t = np.clip(t, np.float32(0), np.nextafter(np.float32(1), np.float32(0))).astype(np.float64)
    return t, w * np.pi / 2 * np.sin(np.pi * u)


def exact_integrand(method: ContinuousTimeMethod, oracle: SequenceOracle, t: float) -> float:
    """E_data E_{q(x_t|x_0)} of the bound's integrand at time t, by enumeration."""
    tr = method.transition
    states = all_sequences(tr.num_states)
    x0 = oracle.sequences.repeat_interleave(len(states), dim=0)
    xt = states.repeat(len(oracle.sequences), 1)
    times = torch.full((len(x0),), t, dtype=F64)
    log_q = tr.log_marginal(x0, times, dtype=F64).gather(-1, xt[..., None]).squeeze(-1).sum(1)
    weight = (oracle.log_table.repeat_interleave(len(states)) + log_q).exp()
    ok = weight > 0
    with torch.no_grad():
        values = method.elbo_integrand(x0[ok], xt[ok], times[ok], dtype=F64)
    return float((weight[ok] * values).sum())


def exact_ct_bound(method: ContinuousTimeMethod, oracle: SequenceOracle, nodes: int = 96) -> float:
    """E_data[prior KL + integral over [0, 1] of the integrand] in nats (quadrature in t)."""
    prior = float((oracle.log_table.exp() * method.transition.prior_kl(oracle.sequences, dtype=F64)).sum())
    t, w = gauss_nodes(nodes)
    return prior + sum(wi * exact_integrand(method, oracle, ti) for ti, wi in zip(t, w))


def _step_kernels(method: ContinuousTimeMethod, states: Tensor, s: float, t: float, sampler: str) -> Tensor:
    """Per-token step distributions ``(N, L, S)`` of one predictor step from t to s, written from
    the formulas in :mod:`discodiff.categorical.jumps` (not by calling them)."""
    n = len(states)
    tt, ss = torch.full((n,), t, dtype=F64), torch.full((n,), s, dtype=F64)
    if sampler == "analytic" or s == 0:
        return torch.softmax(method.analytic_log_probs(states, ss, tt).double(), dim=-1)
    rates = method.reverse_rates(states, tt)
    return jump_kernel(rates, states, t - s, sampler, method.options.multi_jump, method.options.ordinal)


def jump_kernel(rates: Tensor, x: Tensor, h: float, sampler: str, multi_jump: str, ordinal: bool) -> Tensor:
    """Exact one-step distribution of the Euler or tau-leaping step with these rates."""
    hr = h * rates
    lam = hr.sum(-1, keepdim=True)
    if sampler == "euler":
        probs = hr.scatter(-1, x[..., None], (1 - lam).clamp(min=0))
        return probs / probs.sum(-1, keepdim=True)
    if ordinal:
        return _ordinal_kernel(hr, x)
    if multi_jump == "reject":
        probs = hr * torch.exp(-lam)
        stay = 1 - lam * torch.exp(-lam)
    else:
        probs = -torch.expm1(-lam) * hr / torch.where(lam > 0, lam, 1.0)
        stay = torch.exp(-lam)
    return probs.scatter(-1, x[..., None], stay)


def _ordinal_kernel(hr: Tensor, x: Tensor, max_count: int = 40) -> Tensor:
    """Sum of independent Poisson jumps (y - x) * P_y, clamped to [0, S - 1], by convolution."""
    num = hr.shape[-1]
    out = torch.zeros_like(hr)
    span = 2 * (num - 1) * max_count
    for idx in np.ndindex(*x.shape):
        pmf = np.zeros(2 * span + 1)
        pmf[span] = 1.0
        for y in range(num):
            step = y - int(x[idx])
            if step == 0 or hr[idx][y] == 0:
                continue
            jump = np.zeros_like(pmf)
            for c, p in enumerate(poisson.pmf(np.arange(max_count), float(hr[idx][y]))):
                jump += p * np.roll(pmf, c * step)
            pmf = jump
        values = np.clip(np.arange(-span, span + 1) + int(x[idx]), 0, num - 1)
        out[idx] = torch.from_numpy(np.bincount(values, weights=pmf, minlength=num))
    return out


def exact_sampler_distribution(method: ContinuousTimeMethod, steps: int, sampler: str) -> np.ndarray:
    """The exact output distribution over the 27 data sequences of ``method.sample(steps, sampler)``."""
    tr = method.transition
    states = all_sequences(tr.num_states)
    prior = tr.log_prior()
    dist = torch.exp(sum(prior[states[:, j]] for j in range(L)))
    grid = np.linspace(1.0, 0.0, steps + 1)
    grid[0] = LAST_TIME  # as the sampler does
    o = method.options

    def apply(dist: Tensor, kernels_of) -> Tensor:
        live = dist > 0
        kernels = kernels_of(states[live])
        step = torch.exp(sum(torch.log(kernels[:, k, states[:, k]]) for k in range(L)))
        return dist[live] @ step

    with torch.no_grad():
        for t, s in itertools.pairwise(grid):
            dist = apply(dist, lambda x, t=t, s=s: _step_kernels(method, x, s, t, sampler))
            if sampler == "pc" and s > 0 and s <= o.corrector_entry_time:
                for _ in range(o.corrector_steps):
                    dist = apply(dist, lambda x, t=t, s=s: _corrector_kernels(method, x, s, t))
    data = (states < K).all(dim=1)
    assert float(dist[~data].sum()) < 1e-12, "the sampler left non-data states at t = 0"
    return dist[data].numpy()


def _corrector_kernels(method: ContinuousTimeMethod, x: Tensor, s: float, t: float) -> Tensor:
    ss = torch.full((len(x),), s, dtype=F64)
    forward = method.transition.rate_row(x, ss, dtype=F64).scatter(-1, x[..., None], 0.0)
    rates = forward + method.reverse_rates(x, ss)
    o = method.options
    return jump_kernel(rates, x, o.corrector_step_size * (t - s), "tau_leaping", o.multi_jump, o.ordinal)
