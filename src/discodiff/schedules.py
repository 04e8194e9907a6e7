r"""Noise schedules shared by every process.

A schedule is one monotone curve on t in [0, 1] (data at 0, noise at 1), stored as the *total
noise* :math:`\bar\sigma(t) = -\log\bar\alpha(t)` (SEDD's ``total_noise``) and its derivative.
Every other view derives from that pair, in one place:

- :math:`\bar\alpha(t) = e^{-\bar\sigma(t)}`: signal kept. Gaussian VP processes use
  :math:`x_t = \sqrt{\bar\alpha}\,x_0 + \sqrt{1-\bar\alpha}\,\epsilon`; categorical processes keep
  the token with probability :math:`\bar\alpha`.
- :math:`\lambda(t) = \log\frac{\bar\alpha}{1-\bar\alpha}`: log signal-to-noise ratio (Kingma et
  al. 2021, VDM).
- :math:`\beta_i = 1 - \bar\alpha(t_i)/\bar\alpha(t_{i-1})` on the grid :math:`t_i = i/T`: the
  per-step betas of a discrete-time chain (Ho et al. 2020).

Computing from :math:`\bar\sigma` keeps small noise levels exact: :math:`1-\bar\alpha =
-\mathrm{expm1}(-\bar\sigma)`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor

from .registry import Registry

SCHEDULES: Registry[type[Schedule]] = Registry("schedule")

INVERSE_BISECTION_STEPS = 64
"""Bisection steps for numeric inverses: 2^-64 resolution on [0, 1], below float64 spacing."""


class Schedule(ABC):
    r"""A noise level curve :math:`\bar\sigma(t)`, increasing on [0, 1]."""

    @abstractmethod
    def sigma_bar(self, t: Tensor) -> Tensor:
        r"""Total noise :math:`\bar\sigma(t) = -\log\bar\alpha(t)`; ``t``: any shape."""

    @abstractmethod
    def dsigma_bar(self, t: Tensor) -> Tensor:
        r"""Its time derivative :math:`\bar\sigma'(t)` (SEDD's ``rate_noise``)."""

    def alpha_bar(self, t: Tensor) -> Tensor:
        r""":math:`\bar\alpha(t) = e^{-\bar\sigma(t)}`."""
        return torch.exp(-self.sigma_bar(t))

    def one_minus_alpha_bar(self, t: Tensor) -> Tensor:
        r""":math:`1 - \bar\alpha(t)`, exact for small noise via ``expm1``."""
        return -torch.expm1(-self.sigma_bar(t))

    def dalpha_bar(self, t: Tensor) -> Tensor:
        r""":math:`\bar\alpha'(t) = -\bar\alpha(t)\,\bar\sigma'(t)`."""
        return -self.alpha_bar(t) * self.dsigma_bar(t)

    def log_snr(self, t: Tensor) -> Tensor:
        r""":math:`\lambda(t) = \log\bar\alpha - \log(1-\bar\alpha)`."""
        return -self.sigma_bar(t) - torch.log(self.one_minus_alpha_bar(t))

    def dlog_snr(self, t: Tensor) -> Tensor:
        r""":math:`\lambda'(t) = -\bar\sigma'(t) / (1 - \bar\alpha(t))`."""
        return -self.dsigma_bar(t) / self.one_minus_alpha_bar(t)

    def t_from_log_snr(self, log_snr: Tensor) -> Tensor:
        r"""Inverse of :math:`\lambda(t)` (decreasing), by bisection in float64."""
        return _bisect(lambda t: -self.log_snr(t), -log_snr)

    def t_from_sigma_bar(self, sigma_bar: Tensor) -> Tensor:
        r"""Inverse of :math:`\bar\sigma(t)` (increasing), by bisection in float64."""
        return _bisect(self.sigma_bar, sigma_bar)

    def grid(self, T: int) -> Tensor:
        """The discrete-time grid ``t_i = i / T``, ``i = 0..T``, float64 ``(T + 1,)``."""
        if T < 1:
            raise ValueError(f"number of steps T must be >= 1, got {T}")
        return torch.arange(T + 1, dtype=torch.float64) / T

    def alpha_bars(self, T: int) -> Tensor:
        r""":math:`\bar\alpha(t_i)` on the T-step grid, float64 ``(T + 1,)``."""
        return self.alpha_bar(self.grid(T))

    def betas(self, T: int) -> Tensor:
        r"""Per-step :math:`\beta_i = 1 - \bar\alpha(t_i)/\bar\alpha(t_{i-1})`, ``i = 1..T``.

        Float64 ``(T,)``; the product of :math:`1-\beta_i` telescopes back to
        :math:`\bar\alpha(t_i)/\bar\alpha(0)`.
        """
        sb = self.sigma_bar(self.grid(T))
        return -torch.expm1(-(sb[1:] - sb[:-1]))


def _bisect(increasing, target: Tensor) -> Tensor:
    """Solve ``increasing(t) = target`` for t in [0, 1] elementwise (clamped at the ends)."""
    target = target.to(torch.float64)
    lo = torch.zeros_like(target)
    hi = torch.ones_like(target)
    for _ in range(INVERSE_BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        below = increasing(mid) < target
        lo = torch.where(below, mid, lo)
        hi = torch.where(below, hi, mid)
    return 0.5 * (lo + hi)


@SCHEDULES.register("linear")
@dataclass(frozen=True)
class LinearSchedule(Schedule):
    r"""Linear :math:`\beta(t) = \beta_{min} + t(\beta_{max}-\beta_{min})` (DDPM; VP SDE).

    :math:`\bar\sigma(t) = \beta_{min} t + \tfrac12(\beta_{max}-\beta_{min})t^2`, the VP SDE's
    marginal (Song et al. 2021, Sec. 3.4 and App. B). With T = 1000 its betas run from about
    1e-4 to 0.02, DDPM's linear schedule (Ho et al. 2020, Sec. 4).
    """

    beta_min: float = 0.1
    beta_max: float = 20.0

    def __post_init__(self) -> None:
        if not 0 <= self.beta_min <= self.beta_max:
            raise ValueError(
                f"linear schedule needs 0 <= beta_min <= beta_max, got {self.beta_min}, {self.beta_max}"
            )

    def sigma_bar(self, t: Tensor) -> Tensor:
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2

    def dsigma_bar(self, t: Tensor) -> Tensor:
        return self.beta_min + (self.beta_max - self.beta_min) * t


@SCHEDULES.register("cosine")
@dataclass(frozen=True)
class CosineSchedule(Schedule):
    r"""Cosine schedule (Nichol & Dhariwal 2021, Eq. 17).

    :math:`\bar\alpha(t) = f(t)/f(0)`, :math:`f(t) = \cos^2\big(\tfrac{t+s}{1+s}\tfrac\pi2\big)`,
    so :math:`\bar\alpha(1) = 0` (up to float rounding). Their discrete code clips betas at 0.999;
    here the Gaussian process instead refuses eps-prediction where alpha vanishes (see
    ``gaussian.process``).
    """

    s: float = 0.008

    def _theta(self, t: Tensor) -> Tensor:
        return (t + self.s) / (1 + self.s) * (math.pi / 2)

    def sigma_bar(self, t: Tensor) -> Tensor:
        theta0 = self.s / (1 + self.s) * (math.pi / 2)
        # clamp: rounding could give -1e-20 at t = 0, and sqrt(1 - alpha_bar) would be NaN
        return (-2 * (torch.log(torch.cos(self._theta(t))) - math.log(math.cos(theta0)))).clamp(min=0)

    def dsigma_bar(self, t: Tensor) -> Tensor:
        return 2 * torch.tan(self._theta(t)) * (math.pi / 2) / (1 + self.s)


@SCHEDULES.register("sqrt")
@dataclass(frozen=True)
class SqrtSchedule(Schedule):
    r"""Diffusion-LM's sqrt schedule (Li et al. 2022, Sec. 4.2 / App. A).

    :math:`\bar\alpha(t) = \frac{1-\sqrt{t+s}}{1-\sqrt{s}}`, normalized to 1 at t = 0 as their
    discrete chain is; it reaches 0 at :math:`t = 1 - s` and stays there. The noise rises fast
    near t = 0, which Diffusion-LM found important for rounding.
    """

    s: float = 1e-4

    def _alpha_bar(self, t: Tensor) -> Tensor:
        return ((1 - torch.sqrt(t + self.s)) / (1 - math.sqrt(self.s))).clamp(min=0)

    def sigma_bar(self, t: Tensor) -> Tensor:
        return -torch.log(self._alpha_bar(t))

    def dsigma_bar(self, t: Tensor) -> Tensor:
        root = torch.sqrt(t + self.s)
        return 1 / (2 * root * (1 - root).clamp(min=0))


@SCHEDULES.register("loglinear")
@dataclass(frozen=True)
class LogLinearSchedule(Schedule):
    r"""SEDD / MDLM log-linear schedule: :math:`\bar\alpha(t) = 1 - (1-\epsilon)t`.

    :math:`\bar\sigma(t) = -\log(1-(1-\epsilon)t)` (Lou et al. 2024, Sec. 5.1; Sahoo et al.
    2024). With ``eps = 0``, :math:`\bar\alpha(1) = 0` exactly, which an absorbing process needs
    for its prior to be the all-mask state.
    """

    eps: float = 1e-3

    def __post_init__(self) -> None:
        if not 0 <= self.eps < 1:
            raise ValueError(f"loglinear schedule needs 0 <= eps < 1, got {self.eps}")

    def sigma_bar(self, t: Tensor) -> Tensor:
        return -torch.log1p(-(1 - self.eps) * t)

    def dsigma_bar(self, t: Tensor) -> Tensor:
        return (1 - self.eps) / (1 - (1 - self.eps) * t)


@SCHEDULES.register("polynomial")
@dataclass(frozen=True)
class PolynomialSchedule(Schedule):
    r"""Discrete flow matching's polynomial scheduler in our time: :math:`\bar\alpha(t) = (1-t)^n`.

    Flow matching writes the mixture path with data at time 1, :math:`\kappa(s) = s^n` (Gat et al.
    2024, Sec. 2.4 and their ``PolynomialConvexScheduler``); with data at t = 0,
    :math:`\bar\alpha(t) = \kappa(1 - t)`, so :math:`\bar\sigma(t) = -n\log(1-t)`,
    :math:`\bar\sigma'(t) = n/(1-t)`. ``exponent: 1`` is the linear (CondOT) scheduler
    :math:`\kappa(s) = s` (Campbell et al. 2024's linear path), the same curve as ``loglinear``
    with ``eps: 0``. :math:`\bar\alpha(1) = 0` exactly.
    """

    exponent: float = 1.0

    def __post_init__(self) -> None:
        if self.exponent <= 0:
            raise ValueError(f"polynomial schedule needs exponent > 0, got {self.exponent}")

    def sigma_bar(self, t: Tensor) -> Tensor:
        return -self.exponent * torch.log1p(-t)

    def dsigma_bar(self, t: Tensor) -> Tensor:
        return self.exponent / (1 - t)


@SCHEDULES.register("geometric")
@dataclass(frozen=True)
class GeometricSchedule(Schedule):
    r"""SEDD's geometric total noise :math:`\bar\sigma(t) = \sigma_{min}^{1-t}\sigma_{max}^t`.

    (Lou et al. 2024, Sec. 5.1; ``GeometricNoise`` in their code.) Note
    :math:`\bar\alpha(0) = e^{-\sigma_{min}}`, slightly below 1.
    """

    sigma_min: float = 1e-4
    sigma_max: float = 20.0

    def __post_init__(self) -> None:
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(
                f"geometric schedule needs 0 < sigma_min < sigma_max, got {self.sigma_min}, {self.sigma_max}"
            )

    def sigma_bar(self, t: Tensor) -> Tensor:
        return self.sigma_min ** (1 - t) * self.sigma_max**t

    def dsigma_bar(self, t: Tensor) -> Tensor:
        return self.sigma_bar(t) * math.log(self.sigma_max / self.sigma_min)


@SCHEDULES.register("geometric_std")
@dataclass(frozen=True)
class GeometricStdSchedule(Schedule):
    r"""Song et al.'s VE noise levels :math:`\sigma(t) = \sigma_{min}(\sigma_{max}/\sigma_{min})^t`.

    The VE process :math:`x_t = x_0 + \sigma(t)\epsilon` is a VP process in scaled coordinates
    with :math:`\bar\alpha = 1/(1+\sigma^2)`, so :math:`\bar\sigma(t) = \log(1+\sigma(t)^2)`
    (Song et al. 2021, Sec. 3.4; Kingma et al. 2021, App. on equivalence).
    """

    sigma_min: float = 0.01
    sigma_max: float = 50.0

    def __post_init__(self) -> None:
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(
                f"geometric_std schedule needs 0 < sigma_min < sigma_max, got {self.sigma_min}, "
                f"{self.sigma_max}"
            )

    def std(self, t: Tensor) -> Tensor:
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def sigma_bar(self, t: Tensor) -> Tensor:
        return torch.log1p(self.std(t) ** 2)

    def dsigma_bar(self, t: Tensor) -> Tensor:
        s2 = self.std(t) ** 2
        return 2 * s2 * math.log(self.sigma_max / self.sigma_min) / (1 + s2)
