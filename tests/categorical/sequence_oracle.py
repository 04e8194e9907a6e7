"""An enumerable token distribution (length-3 sequences over K = 3 ids) with exact denoisers, and
exact enumerations of a D3PM's bound and of its sampler's output distribution."""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
from torch import Tensor

from discodiff.categorical import D3PM, Transition

K, L = 3, 3
F64 = torch.float64


def all_sequences(num_ids: int, length: int = L) -> Tensor:
    """Every sequence over ``num_ids`` ids, ``(num_ids**length, length)`` long, lexicographic."""
    return torch.tensor(list(itertools.product(range(num_ids), repeat=length)), dtype=torch.long)


def sequence_index(x: Tensor, num_ids: int) -> Tensor:
    """Row index of each sequence of ``x`` ``(N, L)`` in :func:`all_sequences`."""
    weights = num_ids ** torch.arange(x.shape[1] - 1, -1, -1)
    return (x * weights).sum(dim=1)


class SequenceOracle:
    """A fixed joint table p(x_1, x_2, x_3) with strong dependence between the tokens.

    ``p(c) ∝ exp(2 [c_0 = c_1] + 1.5 [c_2 = (c_0 + c_1) mod 3] + 0.5 c_0)``.
    """

    def __init__(self) -> None:
        self.sequences = all_sequences(K)
        c = self.sequences.double()
        energy = 2.0 * (c[:, 0] == c[:, 1]) + 1.5 * (c[:, 2] == (c[:, 0] + c[:, 1]) % 3) + 0.5 * c[:, 0]
        self.log_table = torch.log_softmax(energy, dim=0)

    @property
    def table(self) -> np.ndarray:
        return self.log_table.exp().numpy()

    def entropy(self) -> float:
        """Data entropy in nats."""
        return float(-(self.log_table.exp() * self.log_table).sum())

    def token_marginal(self) -> Tensor:
        """Frequency of each id over all positions, ``(K,)``."""
        p = self.log_table.exp()
        return torch.stack([(p[:, None] * (self.sequences == k)).sum() for k in range(K)]) / L

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        idx = torch.multinomial(self.log_table.exp(), n, replacement=True, generator=generator)
        return self.sequences[idx]

    def posterior(self, transition: Transition, x_t: Tensor, t: Tensor) -> Tensor:
        r"""Exact per-token :math:`\log p(x_0^i = k | x_t)`, ``(B, L, K)`` float64."""
        log_lik = transition.log_likelihood(x_t, 0.0, t, dtype=F64)[..., :K]  # log q(x_t^j | x0^j = k)
        per_seq = sum(log_lik[:, j, self.sequences[:, j]] for j in range(L))  # (B, 27)
        log_post = torch.log_softmax(per_seq + self.log_table, dim=1)
        onehot = torch.stack([torch.nn.functional.one_hot(self.sequences[:, i], K) for i in range(L)], 1)
        probs = torch.einsum("bc,cik->bik", log_post.exp(), onehot.double())
        return torch.log(probs)

    def net(self, transition: Transition, timesteps: int, *, form: str = "average"):
        """The exact denoiser ``net(x_t, t, cond)`` for a D3PM with this transition and reverse form.

        ``"average"`` returns the exact posterior :math:`\\log p(x_0^i|x_t)`. ``"d3pm"`` returns the
        :math:`\\tilde p \\propto p(x_0^i|x_t)/q(x_t^i|x_0^i)` that makes D3PM's form equal to the
        exact average of posteriors (PITFALLS, "(a)").
        """

        def net(x_t: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
            t64 = torch.round(t.double() * timesteps) / timesteps
            log_post = self.posterior(transition, x_t, t64)
            if form == "average":
                return log_post
            log_lik = transition.log_likelihood(x_t, 0.0, t64, dtype=F64)[..., :K]
            return torch.where(log_lik > -math.inf, log_post - log_lik, -math.inf)

        return net


def exact_bound(method: D3PM, oracle: SequenceOracle) -> tuple[float, Tensor]:
    """E_data[bound] in nats, and the bound of each of the 27 sequences, by enumerating x_t."""
    tr = method.transition
    x0 = oracle.sequences
    states = all_sequences(tr.num_states)
    x0_rep = x0.repeat_interleave(len(states), dim=0)
    xt_rep = states.repeat(len(x0), 1)
    per_seq = method.transition.prior_kl(x0, dtype=F64)
    with torch.no_grad():
        for i in range(1, method.T + 1):
            t = torch.full((len(x0_rep),), i / method.T, dtype=F64)
            log_q = tr.log_marginal(x0_rep, t, dtype=F64).gather(-1, xt_rep[..., None]).squeeze(-1).sum(1)
            ok = log_q > -math.inf
            kl = method.step_kl(x0_rep[ok], xt_rep[ok], t[ok] - 1 / method.T, t[ok])
            contrib = torch.zeros(len(x0_rep), dtype=F64)
            contrib[ok] = log_q[ok].exp() * kl
            per_seq = per_seq + contrib.reshape(len(x0), len(states)).sum(1)
    return float((oracle.log_table.exp() * per_seq).sum()), per_seq


def exact_sampler_distribution(method: D3PM, steps: int) -> np.ndarray:
    """The exact output distribution over the 27 data sequences of ancestral ``method.sample(steps=...)``.

    Propagates the prior through every reverse step as an explicit S^3 x S^3 matrix (the product
    of the per-token kernels).
    """
    tr = method.transition
    states = all_sequences(tr.num_states)
    prior = tr.log_prior()
    dist = torch.exp(sum(prior[states[:, j]] for j in range(L)))
    grid = np.round(np.linspace(method.T, 0, steps + 1)).astype(int)
    with torch.no_grad():
        for i, j in itertools.pairwise(grid):
            live = dist > 0  # the exact denoiser is undefined at unreachable states
            t = torch.full((int(live.sum()),), i / method.T, dtype=F64)
            log_ps = method.reverse_log_probs(states[live], torch.full_like(t, j / method.T), t)
            step = torch.exp(sum(log_ps[:, k, states[:, k]] for k in range(L)))  # (live, S^3)
            dist = dist[live] @ step
    data = (states < K).all(dim=1)
    assert float(dist[~data].sum()) < 1e-12, "the sampler left non-data states at t = 0"
    return dist[data].numpy()
