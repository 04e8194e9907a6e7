"""An enumerable distribution over short token sequences, embedded, with exact posteriors given a
noisy latent x_t = alpha e_w + sigma eps: the oracle denoisers of the embedding methods."""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
from torch import Tensor

F64 = torch.float64


class EmbeddedSequences:
    """p(w) over all ``vocab**length`` sequences (lexicographic) and an embedding table (K, d)."""

    def __init__(self, probs: Tensor, table: Tensor, length: int) -> None:
        self.vocab, self.dim = table.shape
        self.seqs = torch.tensor(list(itertools.product(range(self.vocab), repeat=length)), dtype=torch.long)
        if probs.shape != (len(self.seqs),):
            raise ValueError("one probability per sequence")
        self.probs = probs.to(F64) / probs.sum()
        self.table = table.to(F64)
        self.length = length

    @property
    def entropy(self) -> float:
        """H(w) in nats."""
        p = self.probs
        return float(-(p * p.log()).sum())

    def log_marginals(self, x_t: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
        """Exact log p(w_i = k | x_t) per position, (B, n, K) float64, for token-layout ``x_t`` (B, n, d)."""
        x = x_t.to(F64)
        a, s2 = alpha.to(F64)[:, None, None], (sigma.to(F64) ** 2)[:, None, None]
        # log N(x_i; a e_k, s2 I) up to a constant in k: (B, n, K)
        per_token = (a * x @ self.table.T - 0.5 * a**2 * (self.table**2).sum(-1)) / s2
        positions = torch.arange(self.length)
        seq_terms = per_token[:, positions[None, :], self.seqs].sum(-1)  # (B, S)
        log_post = torch.log_softmax(seq_terms + self.probs.log()[None], dim=-1)  # (B, S)
        one_hot = torch.nn.functional.one_hot(self.seqs, self.vocab).to(F64)  # (S, n, K)
        return torch.logsumexp(log_post[:, :, None, None] + one_hot.log()[None], dim=1)

    def marginals(self, x_t: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
        """Exact p(w_i = k | x_t), (B, n, K) float64."""
        return self.log_marginals(x_t, alpha, sigma).exp()

    def posterior_mean(self, x_t: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
        """E[e_{w_i} | x_t], (B, n, d) float64."""
        return self.marginals(x_t, alpha, sigma) @ self.table


def random_sequences(
    vocab: int = 3, length: int = 3, radius: float = 2.0, seed: int = 0
) -> EmbeddedSequences:
    """Correlated random p(w) (a Dirichlet(0.5) draw) and K points on a circle of ``radius`` (d = 2)."""
    probs = torch.from_numpy(np.random.default_rng(seed).dirichlet(np.full(vocab**length, 0.5)))
    angles = torch.arange(vocab, dtype=F64) * 2 * math.pi / vocab + 0.3
    table = radius * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    return EmbeddedSequences(probs, table, length)
