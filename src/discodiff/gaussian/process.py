r"""Gaussian forward processes :math:`x_t = \alpha(t)\,x_0 + \sigma(t)\,\epsilon`.

One affine family covers DDPM, the VP SDE and the VE SDE; only :math:`\alpha(t), \sigma(t)` differ.
Coefficients are computed in float64 and cast by the caller.

- Forward marginal :math:`q(x_t|x_0) = \mathcal N(\alpha_t x_0, \sigma_t^2 I)` (Ho et al. 2020,
  Eq. 4; Kingma et al. 2021, Eq. 1).
- Transition :math:`q(x_t|x_s) = \mathcal N(\alpha_{t|s} x_s, \sigma_{t|s}^2 I)`,
  :math:`\alpha_{t|s} = \alpha_t/\alpha_s`, :math:`\sigma_{t|s}^2 = \sigma_t^2 - \alpha_{t|s}^2
  \sigma_s^2` (Kingma et al. 2021, Eq. 2-3).
- Posterior for any s < t: :math:`q(x_s|x_t,x_0) = \mathcal N(\mu, \tilde\sigma^2)`,
  :math:`\mu = \frac{\alpha_{t|s}\sigma_s^2}{\sigma_t^2}x_t + \frac{\alpha_s\sigma_{t|s}^2}
  {\sigma_t^2}x_0`, :math:`\tilde\sigma^2 = \sigma_{t|s}^2\sigma_s^2/\sigma_t^2` (Ho et al.
  2020, Eq. 6-7 for s = t - 1; Kingma et al. 2021, Eq. 28 in general).
- SDE :math:`dx = f(t)x\,dt + g(t)\,dw` with :math:`f = \alpha'/\alpha`,
  :math:`g^2 = (\sigma^2)' - 2f\sigma^2` (Song et al. 2021, Eq. 5; Kingma et al. 2021, App.).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ..registry import Registry
from ..schedules import Schedule
from ..utils import append_dims

PROCESSES: Registry[type[GaussianProcess]] = Registry("gaussian process")

Prediction = Literal["eps", "x0", "v", "score"]
PREDICTIONS: tuple[str, ...] = ("eps", "x0", "v", "score")


@dataclass(frozen=True)
class Coefficients:
    """``alpha``, ``sigma`` and their time derivatives at some ``t`` (float64, shape of t)."""

    alpha: Tensor
    sigma: Tensor
    dalpha: Tensor
    dsigma: Tensor


class GaussianProcess(ABC):
    r"""An affine Gaussian forward process over a :class:`~discodiff.schedules.Schedule`."""

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule

    @abstractmethod
    def coefficients(self, t: Tensor) -> Coefficients:
        r""":math:`\alpha, \sigma, \alpha', \sigma'` at ``t`` (computed in float64)."""

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        c = self.coefficients(t)
        return c.alpha, c.sigma

    def marginal(self, x0: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        r"""Sample of :math:`q(x_t|x_0)`: :math:`\alpha_t x_0 + \sigma_t\epsilon`; ``t``: (B,)."""
        alpha, sigma = (append_dims(c, x0) for c in self.alpha_sigma(t))
        return alpha * x0 + sigma * eps

    def transition(self, s: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        r""":math:`(\alpha_{t|s}, \sigma^2_{t|s})` of :math:`q(x_t|x_s)` for s <= t (float64)."""
        a_s, s_s = self.alpha_sigma(s)
        a_t, s_t = self.alpha_sigma(t)
        a_ts = a_t / a_s
        return a_ts, (s_t**2 - a_ts**2 * s_s**2).clamp(min=0)

    def posterior_coefficients(self, s: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        r"""Coefficients of :math:`q(x_s|x_t,x_0)`: (c_xt, c_x0, variance), float64.

        :math:`\mu = c_{x_t} x_t + c_{x_0} x_0`, :math:`\tilde\sigma^2` = variance. At s = 0 the
        posterior is a point mass on :math:`x_0` (c_x0 = 1, variance 0).
        """
        a_s, s_s = self.alpha_sigma(s)
        _, s_t = self.alpha_sigma(t)
        a_ts, var_ts = self.transition(s, t)
        c_xt = a_ts * s_s**2 / s_t**2
        c_x0 = a_s * var_ts / s_t**2
        return c_xt, c_x0, var_ts * s_s**2 / s_t**2

    def posterior(self, x_t: Tensor, x0: Tensor, s: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and variance of :math:`q(x_s|x_t,x_0)`; ``s``, ``t``: (B,)."""
        c_xt, c_x0, var = (append_dims(c, x_t) for c in self.posterior_coefficients(s, t))
        return c_xt * x_t + c_x0 * x0, var

    def drift_diffusion(self, t: Tensor) -> tuple[Tensor, Tensor]:
        r"""SDE coefficients :math:`f(t)` and :math:`g(t)^2` (float64)."""
        c = self.coefficients(t)
        f = c.dalpha / c.alpha
        g2 = 2 * c.sigma * c.dsigma - 2 * f * c.sigma**2
        return f, g2

    def prior_std(self, t_max: float = 1.0) -> float:
        r"""Std of the Gaussian prior at ``t_max``: :math:`\sqrt{\alpha^2 + \sigma^2}`.

        This is the marginal's scale for unit-variance data: 1 for VP, about
        :math:`\sigma_{max}` for VE (Song et al. 2021, Sec. 3.4).
        """
        cache = self.__dict__.setdefault("_prior_std", {})  # a constant of the schedule: computed once
        if t_max not in cache:
            a, s = self.alpha_sigma(torch.tensor([t_max], dtype=torch.float64))
            cache[t_max] = float(torch.sqrt(a**2 + s**2))
        return cache[t_max]


@PROCESSES.register("vp")
class VPProcess(GaussianProcess):
    r"""Variance preserving: :math:`\alpha = \sqrt{\bar\alpha}`, :math:`\sigma = \sqrt{1-\bar\alpha}`.

    DDPM's forward process (Ho et al. 2020, Eq. 4) and the VP SDE
    :math:`dx = -\tfrac12\beta(t)x\,dt + \sqrt{\beta(t)}\,dw` with :math:`\beta = \bar\sigma'`
    (Song et al. 2021, Eq. 11).
    """

    def coefficients(self, t: Tensor) -> Coefficients:
        t = t.to(torch.float64)
        sb, dsb = self.schedule.sigma_bar(t), self.schedule.dsigma_bar(t)
        alpha = torch.exp(-0.5 * sb)
        sigma = torch.sqrt(-torch.expm1(-sb))
        return Coefficients(alpha, sigma, -0.5 * dsb * alpha, alpha**2 * dsb / (2 * sigma))

    def transition(self, s: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        # 1 - alpha_bar_t / alpha_bar_s, exact for close s and t.
        d = self.schedule.sigma_bar(t.to(torch.float64)) - self.schedule.sigma_bar(s.to(torch.float64))
        return torch.exp(-0.5 * d), -torch.expm1(-d)


@PROCESSES.register("ve")
class VEProcess(GaussianProcess):
    r"""Variance exploding: :math:`\alpha = 1`, :math:`\sigma^2 = e^{\bar\sigma} - 1`.

    The VE SDE :math:`dx = \sqrt{d\sigma^2/dt}\,dw` (Song et al. 2021, Eq. 9); with the
    ``geometric_std`` schedule :math:`\sigma(t) = \sigma_{min}(\sigma_{max}/\sigma_{min})^t`.
    """

    def coefficients(self, t: Tensor) -> Coefficients:
        t = t.to(torch.float64)
        sb, dsb = self.schedule.sigma_bar(t), self.schedule.dsigma_bar(t)
        sigma = torch.sqrt(torch.expm1(sb))
        one = torch.ones_like(sigma)
        return Coefficients(one, sigma, torch.zeros_like(sigma), torch.exp(sb) * dsb / (2 * sigma))


# --- parameterizations: conversions between what a network predicts and what the math needs ---


def eps_to_x0(eps: Tensor, x_t: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    r""":math:`\hat x_0 = (x_t - \sigma\hat\epsilon)/\alpha` (Ho et al. 2020, Eq. 15)."""
    return (x_t - sigma * eps) / alpha


def x0_to_eps(x0: Tensor, x_t: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    r""":math:`\hat\epsilon = (x_t - \alpha\hat x_0)/\sigma`."""
    return (x_t - alpha * x0) / sigma


def x0_eps_to_v(x0: Tensor, eps: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    r""":math:`v = \alpha\epsilon - \sigma x_0` (Salimans & Ho 2022, Sec. 4 / App. D)."""
    return alpha * eps - sigma * x0


def v_to_x0_eps(v: Tensor, x_t: Tensor, alpha: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
    r"""Invert :math:`(x_t, v)` for :math:`(x_0, \epsilon)`.

    :math:`x_0 = (\alpha x_t - \sigma v)/(\alpha^2+\sigma^2)`,
    :math:`\epsilon = (\sigma x_t + \alpha v)/(\alpha^2+\sigma^2)`; for VP the denominator is 1.
    """
    n2 = alpha**2 + sigma**2
    return (alpha * x_t - sigma * v) / n2, (sigma * x_t + alpha * v) / n2


def eps_to_score(eps: Tensor, sigma: Tensor) -> Tensor:
    r""":math:`\nabla_x\log q_t(x) = -\hat\epsilon/\sigma_t` (Song et al. 2021, Sec. 3.3)."""
    return -eps / sigma


def score_to_eps(score: Tensor, sigma: Tensor) -> Tensor:
    r""":math:`\hat\epsilon = -\sigma_t\, s_\theta(x_t, t)`."""
    return -sigma * score


def to_x0_eps(prediction: str, out: Tensor, x_t: Tensor, alpha: Tensor, sigma: Tensor):
    """Turn a network output of kind ``prediction`` into ``(x0_hat, eps_hat)``."""
    if prediction == "eps":
        return eps_to_x0(out, x_t, alpha, sigma), out
    if prediction == "x0":
        return out, x0_to_eps(out, x_t, alpha, sigma)
    if prediction == "v":
        return v_to_x0_eps(out, x_t, alpha, sigma)
    if prediction == "score":
        eps = score_to_eps(out, sigma)
        return eps_to_x0(eps, x_t, alpha, sigma), eps
    raise ValueError(f"unknown prediction {prediction!r}; allowed: {', '.join(PREDICTIONS)}")


def from_x0_eps(prediction: str, x0: Tensor, eps: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    """The quantity a network of kind ``prediction`` should output, given ``x0`` and ``eps``."""
    if prediction == "eps":
        return eps
    if prediction == "x0":
        return x0
    if prediction == "v":
        return x0_eps_to_v(x0, eps, alpha, sigma)
    if prediction == "score":
        return eps_to_score(eps, sigma)
    raise ValueError(f"unknown prediction {prediction!r}; allowed: {', '.join(PREDICTIONS)}")
