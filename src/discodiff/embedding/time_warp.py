r"""CDCD's time warping: a learned monotone CDF of the loss over the noise level.

The cross-entropy :math:`\ell(t)` of the denoiser rises monotonically with the noise level, from
near 0 to the unigram entropy. CDCD (Dieleman et al. 2022, Sec. 3, time warping) reads it as an
unnormalized CDF: noise levels are drawn with density :math:`\propto \ell'(t)`, i.e. uniformly in
"information destroyed", by :math:`t = F^{-1}(u)`, :math:`u \sim U[0, 1]`, where
:math:`F = (\tilde F - \tilde F(0))/(\tilde F(1) - \tilde F(0))` and :math:`\tilde F \approx \ell`
is fitted by least squares to the observed losses. The same inverse places the sampling steps
(uniform u).

Here :math:`\tilde F` is a monotone piecewise-linear function of the process time t in [0, 1]
(for CDCD's VE schedule, t is log sigma rescaled: t = 0 is sigma_min, t = 1 is sigma_max), with
``bins`` learnable bin widths :math:`w_j` (a softmax, summing to 1) and heights :math:`h_j > 0`
(in nats), plus a learnable offset c (the loss at t = 0):

.. math::
    \tilde F(t) = c + \sum_{j<k} h_j + h_k\frac{t - \tau_k}{w_k} \quad (t \in [\tau_k, \tau_{k+1}]),
    \qquad F(t) = \frac{\tilde F(t) - c}{\sum_j h_j}, \qquad f(t) = \frac{h_k}{w_k \sum_j h_j},

with knots :math:`\tau_k = \sum_{j<k} w_j`. Widths and heights have floors
(:data:`WARP_WIDTH_FLOOR`, :data:`WARP_HEIGHT_FLOOR`), so the density stays positive and every
noise level keeps being sampled. The fit is the plain least squares
:math:`E_{t \sim f}[(\tilde F(t) - \ell(t))^2]` on the training examples' own noise levels: its
minimizer is still :math:`\tilde F = \ell` wherever f > 0, it weights the fit toward the levels
where the loss changes (where the warp's shape matters), and each example's term depends on that
example alone, so data-parallel ranks reproduce one process exactly. (PLAID's CDCD
reimplementation, Gulrajani & Hashimoto 2023, reweights by :math:`1/f(t)` to fit uniformly in t;
those weights are unbounded where f is small.) The parameters are stored scaled down by
:data:`WARP_PARAM_SCALE` so that, under the trainer's one learning rate, the warp keeps up with the
loss curve. All knots are computed in float64.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..errors import ConfigError

WARP_WIDTH_FLOOR = 0.1
"""Share of [0, 1] spread evenly over the bins: every bin is at least ``0.1 / bins`` wide."""

WARP_HEIGHT_FLOOR = 1e-3
"""Smallest bin height in nats, so that flat stretches of the loss keep a positive density."""

WARP_PARAM_SCALE = 10.0
"""The warp's parameters are stored divided by this. Adam moves a parameter by about the learning
rate per step whatever its gradient's scale, so the warp follows the loss curve 10 times faster
than the network learns (PLAID's CDCD gives the warp a learning rate of 1e-2 against 1.4e-3)."""


class TimeWarp(nn.Module):
    r"""Monotone piecewise-linear :math:`\tilde F(t)` on [0, 1]; see the module docstring.

    Args:
        bins: number of linear pieces.
        initial_total: :math:`\tilde F(1) - \tilde F(0)` at initialization, in nats (e.g. the
            log vocabulary size, the loss of a uniform guess); the initial warp is the identity.
    """

    def __init__(self, bins: int = 100, *, initial_total: float = 1.0) -> None:
        super().__init__()
        if bins < 1 or initial_total <= 0:
            raise ConfigError(f"time warp needs bins >= 1 and initial_total > 0, got {bins}, {initial_total}")
        self.bins = bins
        start = math.log(max(initial_total / bins - WARP_HEIGHT_FLOOR, WARP_HEIGHT_FLOOR))
        # logits and offset = WARP_PARAM_SCALE * these parameters
        self.width_params = nn.Parameter(torch.zeros(bins))
        self.height_params = nn.Parameter(torch.full((bins,), start / WARP_PARAM_SCALE))
        self.offset_param = nn.Parameter(torch.zeros(()))

    def knots(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Float64 ``(tau, cum, widths, heights)``: knots (bins + 1,) from 0 to 1, cumulative
        heights (bins + 1,) from 0, and the pieces' widths and heights (bins,)."""
        widths = torch.softmax(WARP_PARAM_SCALE * self.width_params.double(), dim=0) * (1 - WARP_WIDTH_FLOOR)
        widths = widths + WARP_WIDTH_FLOOR / self.bins
        heights = torch.exp(WARP_PARAM_SCALE * self.height_params.double()) + WARP_HEIGHT_FLOOR
        zero = widths.new_zeros(1)
        tau = torch.cat([zero, torch.cumsum(widths, dim=0)[:-1], zero + 1])  # the last knot is exactly 1
        return tau, torch.cat([zero, torch.cumsum(heights, dim=0)]), tau[1:] - tau[:-1], heights

    def _piece(self, t: Tensor, tau: Tensor) -> Tensor:
        """Index of the piece holding each ``t`` (clamped to the ends)."""
        return (torch.searchsorted(tau, t.contiguous(), right=True) - 1).clamp(0, self.bins - 1)

    def unnormalized(self, t: Tensor) -> Tensor:
        r""":math:`\tilde F(t)` in nats, differentiable in the parameters; ``t`` (B,) in [0, 1]."""
        tau, cum, widths, heights = self.knots()
        t = t.to(torch.float64).clamp(0, 1)
        k = self._piece(t, tau)
        return WARP_PARAM_SCALE * self.offset_param.double() + cum[k] + heights[k] * (t - tau[k]) / widths[k]

    @torch.no_grad()
    def cdf(self, t: Tensor) -> Tensor:
        r""":math:`F(t) \in [0, 1]`, float64; F(0) = 0, F(1) = 1. No gradient."""
        tau, cum, widths, heights = self.knots()
        t = t.to(torch.float64).clamp(0, 1)
        k = self._piece(t, tau)
        return ((cum[k] + heights[k] * (t - tau[k]) / widths[k]) / cum[-1]).clamp(0, 1)

    @torch.no_grad()
    def density(self, t: Tensor) -> Tensor:
        r""":math:`f(t) = F'(t)`, float64. No gradient."""
        tau, cum, widths, heights = self.knots()
        k = self._piece(t.to(torch.float64).clamp(0, 1), tau)
        return heights[k] / (widths[k] * cum[-1])

    @torch.no_grad()
    def inverse(self, u: Tensor) -> Tensor:
        r""":math:`t = F^{-1}(u)`, float64 in [0, 1]; ``u`` in [0, 1]. No gradient."""
        tau, cum, widths, heights = self.knots()
        target = u.to(torch.float64).clamp(0, 1) * cum[-1]
        k = self._piece(target, cum)
        return (tau[k] + widths[k] * (target - cum[k]) / heights[k]).clamp(0, 1)

    def fit_loss(self, t: Tensor, loss: Tensor) -> Tensor:
        r"""Per-example :math:`(\tilde F(t) - \ell)^2` (B,) float64; ``t`` drawn by :meth:`inverse`,
        ``loss`` the observed :math:`\ell` (detached here)."""
        return (self.unnormalized(t) - loss.detach().double()) ** 2
