"""Exact denoisers for test data whose diffused marginals are known in closed form."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from discodiff.gaussian.precond import GaussianDenoiser


class GaussianMixture:
    """A mixture of isotropic Gaussians in D dimensions: weights (K,), means (K, D), stds (K,)."""

    def __init__(self, weights: Tensor, means: Tensor, stds: Tensor) -> None:
        self.weights = weights.double() / weights.sum()
        self.means = means.double()
        self.stds = stds.double()

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        noise = torch.randn(n, self.means.shape[1], generator=generator, dtype=torch.float64)
        return (self.means[k] + self.stds[k, None] * noise).float()

    def _components(self, x: Tensor, alpha: Tensor, sigma: Tensor):
        """Per-component log N(x; alpha mu_k, (alpha^2 s_k^2 + sigma^2) I) and variances, (B, K)."""
        x = x.double()
        d = x.shape[1]
        var = alpha[:, None] ** 2 * self.stds[None] ** 2 + sigma[:, None] ** 2  # (B, K)
        diff = x[:, None, :] - alpha[:, None, None] * self.means[None]  # (B, K, D)
        logn = -0.5 * (diff**2).sum(-1) / var - 0.5 * d * torch.log(2 * math.pi * var)
        return logn + torch.log(self.weights)[None], var, diff

    def log_prob(self, x: Tensor, alpha: Tensor | None = None, sigma: Tensor | None = None) -> Tensor:
        """log q_t(x) with x_t = alpha x0 + sigma eps (the data density when alpha=1, sigma=0)."""
        n = x.shape[0]
        alpha = torch.ones(n, dtype=torch.float64) if alpha is None else alpha.double()
        sigma = torch.zeros(n, dtype=torch.float64) if sigma is None else sigma.double()
        logp, _, _ = self._components(x, alpha, sigma)
        return torch.logsumexp(logp, dim=1)

    def eps(self, x: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
        """E[eps | x_t] = -sigma * grad log q_t(x_t)."""
        logp, var, diff = self._components(x, alpha.double(), sigma.double())
        w = torch.softmax(logp, dim=1)  # (B, K)
        score = -(w[:, :, None] * diff / var[:, :, None]).sum(1)
        return -sigma.double()[:, None] * score

    def oracle(self, process, *, data_std: float = 1.0, input_scaling: bool = True):
        """A network ``net(x_in, t, cond)`` that returns the exact eps for a GaussianDiffusion
        with prediction 'eps' (it undoes the model's input scaling)."""
        scaler = GaussianDenoiser(
            lambda *a: None, process, prediction="eps", data_std=data_std, input_scaling=input_scaling
        )

        def net(x_in: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
            t64 = t.double()
            x_t = x_in.double() / scaler.input_scale(t64)[:, None]
            alpha, sigma = process.alpha_sigma(t64)
            return self.eps(x_t, alpha, sigma).to(x_in.dtype)

        return net


def ring_mixture(k: int = 6, radius: float = 2.0, std: float = 0.3) -> GaussianMixture:
    """k equal components on a circle: multimodal, well separated, unit-scale."""
    angles = torch.arange(k, dtype=torch.float64) * 2 * math.pi / k
    means = radius * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    return GaussianMixture(torch.ones(k), means, torch.full((k,), std))
