"""Exact enumerations for masked diffusion on the length-3, K = 3 oracle distribution: the bound
(continuous time by Gauss-Legendre quadrature, T steps by summation; both over every mask pattern,
through the method's own ``diffusion_term``) and the exact output distribution of its samplers."""

from __future__ import annotations

import itertools

import numpy as np
import torch
from torch import Tensor

from discodiff.categorical import AbsorbingTransition, MaskedConfig, MaskedDiffusion
from discodiff.categorical.masked_process import relative_noise
from discodiff.categorical.sampling import sharpen
from discodiff.schedules import Schedule

from .sequence_oracle import K, L, SequenceOracle, all_sequences

F64 = torch.float64
MASK = K
PATTERNS = torch.tensor(list(itertools.product([False, True], repeat=L)))  # (8, L): True = masked
ORACLE_TIME = 0.5  # the exact posterior of an absorbing process does not depend on t


def oracle_net(oracle: SequenceOracle, transition: AbsorbingTransition):
    """The exact SUBS denoiser: log p(x_0^i | x_t), which depends only on the unmasked tokens."""

    def net(x_t: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        return oracle.posterior(transition, x_t, torch.full((x_t.shape[0],), ORACLE_TIME, dtype=F64))

    return net


def make_masked(oracle: SequenceOracle, schedule: Schedule, **options) -> MaskedDiffusion:
    transition = AbsorbingTransition(schedule, K)
    return MaskedDiffusion(
        oracle_net(oracle, transition), transition, MaskedConfig(**options), event_shape=(L,)
    )


def _pattern_terms(method: MaskedDiffusion, oracle: SequenceOracle, t: float) -> Tensor:
    """E_{x_t | x_0}[diffusion_term(x_0, t)] for each of the 27 sequences, by enumerating masks."""
    x0 = oracle.sequences.repeat_interleave(len(PATTERNS), dim=0)  # (27 * 8, L)
    masked = PATTERNS.repeat(len(oracle.sequences), 1)
    u = torch.zeros(*x0.shape, 2, dtype=F64)
    u[..., 0] = torch.where(masked, 1 - 1e-12, 0.0)  # u_0 < alpha_t keeps the token
    times = torch.full((len(x0),), t, dtype=F64)
    term = method.diffusion_term(x0, times, u).double()
    alpha = torch.exp(-relative_noise(method.schedule, torch.tensor(t, dtype=F64)))
    m = masked.sum(dim=1)
    prob = alpha ** (L - m) * (1 - alpha) ** m
    return (prob * term).reshape(len(oracle.sequences), len(PATTERNS)).sum(dim=1)


def exact_bound(method: MaskedDiffusion, oracle: SequenceOracle, *, nodes: int = 64) -> float:
    """E_data[bound] in nats: prior + the integral over t (Gauss-Legendre with ``nodes`` points in
    continuous time; the exact sum over the T grid points otherwise)."""
    if method.T:
        times = [i / method.T for i in range(1, method.T + 1)]
        weights = [1 / method.T] * method.T
    else:
        x, w = np.polynomial.legendre.leggauss(nodes)
        times, weights = list((x + 1) / 2), list(w / 2)
    per_seq = method.prior_kl(oracle.sequences)
    with torch.no_grad():
        for t, w in zip(times, weights):
            per_seq = per_seq + w * _pattern_terms(method, oracle, float(t))
    return float((oracle.log_table.exp() * per_seq).sum())


def prior_gap(method: MaskedDiffusion, oracle: SequenceOracle) -> float:
    """KL(q(x_1) || p(x_1)) over whole sequences: what an exact reverse process still pays."""
    states = all_sequences(K + 1)
    tr = method.transition
    log_q = torch.stack(
        [tr.log_marginal(oracle.sequences, 1.0, dtype=F64)[:, j, states[:, j]] for j in range(L)]
    )
    q1 = (oracle.log_table.exp()[:, None] * log_q.sum(dim=0).exp()).sum(dim=0)  # (64,)
    log_p1 = sum(tr.log_prior()[states[:, j]] for j in range(L))
    keep = q1 > 0
    return float((q1[keep] * (q1[keep].log() - log_p1[keep])).sum())


def reverse_step(method: MaskedDiffusion, x_t: Tensor, log_p0: Tensor, s: Tensor, t: Tensor) -> Tensor:
    """log p(x_s | x_t) per token from the transition's posterior (not the sampler's closed form):
    masked tokens by ``log_posterior_expected``, unmasked ones copied."""
    brute = method.transition.log_posterior_expected(x_t, log_p0, s, t)
    copied = torch.full_like(brute, -torch.inf).scatter_(-1, x_t[..., None], 0.0)
    return torch.where((x_t == MASK)[..., None], brute, copied)


def _step_matrix(method: MaskedDiffusion, states: Tensor, s: float, t: float, temperature: float) -> Tensor:
    """Transition matrix (64, 64) of one ancestral / argmax step on whole sequences."""
    times = torch.full((len(states),), t, dtype=F64)
    log_p0 = sharpen(method.denoise(states, times).double(), temperature=temperature)
    log_ps = reverse_step(method, states, log_p0, torch.full_like(times, s), times)
    return torch.exp(sum(log_ps[:, k, states[:, k]] for k in range(L)))


def _confidence_matrix(method: MaskedDiffusion, states: Tensor, generated: int, s: float) -> Tensor:
    """Transition matrix of one confidence step (temperature 1) from states with ``generated`` positions."""
    out = torch.zeros(len(states), len(states), dtype=F64)
    noise_s = relative_noise(method.schedule, torch.tensor(s, dtype=F64))
    noise_1 = relative_noise(method.schedule, torch.tensor(1.0, dtype=F64))
    keep = int(torch.round(generated * torch.expm1(-noise_s) / torch.expm1(-noise_1)))
    log_p0 = method.denoise(states, torch.full((len(states),), 1.0, dtype=F64)).double()
    for a, state in enumerate(states):
        masked = [i for i in range(L) if state[i] == MASK]
        if len(masked) <= keep:
            out[a, a] = 1.0
            continue
        for draw in itertools.product(range(K), repeat=len(masked)):
            prob = float(np.prod([log_p0[a, i, v].exp() for i, v in zip(masked, draw)]))
            if prob == 0:
                continue
            conf = [float(log_p0[a, i, v]) for i, v in zip(masked, draw)]
            order = sorted(range(len(masked)), key=lambda j: (-conf[j], masked[j]))
            new = state.clone()
            for j in order[: len(masked) - keep]:
                new[masked[j]] = draw[j]
            b = int((new * (K + 1) ** torch.arange(L - 1, -1, -1)).sum())
            out[a, b] += prob
    return out


def exact_sampler_distribution(
    method: MaskedDiffusion, steps: int, sampler: str, start: Tensor | None = None
) -> np.ndarray:
    """Exact output distribution over the 27 sequences of ``method.sample(steps=..., sampler=...)``
    (temperature 1, top-p 1), from the all-mask state or from ``start`` (an (L,) state with known
    tokens unmasked)."""
    states = all_sequences(K + 1)
    if start is None:
        start = torch.full((L,), MASK)
    dist = torch.zeros(len(states), dtype=F64)
    dist[int((start * (K + 1) ** torch.arange(L - 1, -1, -1)).sum())] = 1.0
    generated = int((start == MASK).sum())
    times = method.time_grid(steps)
    with torch.no_grad():
        for t, s in itertools.pairwise(times):
            if sampler == "confidence":
                step = _confidence_matrix(method, states, generated, s)
            else:
                step = _step_matrix(method, states, s, t, 0.0 if sampler == "argmax" else 1.0)
            dist = dist @ step
    data = (states < K).all(dim=1)
    assert float(dist[~data].sum()) < 1e-12, "the sampler left masked tokens at t = 0"
    return dist[data].numpy()
