r"""Schedule quantities of the absorbing process that masked diffusion's bound and samplers use.

With keep probability :math:`\alpha_t = e^{-(\bar\sigma(t) - \bar\sigma(0))}` (the
:class:`~discodiff.categorical.mixing.AbsorbingTransition` of the same schedule; 1 at t = 0):

- :func:`elbo_weight`: the weight :math:`w(t)` of the masked cross-entropy in the bound, in
  continuous time or for T steps;
- :func:`unmask_log_probs`: the reverse step of a masked token from t to s < t, and
  :func:`masked_reverse_logits`: that step's distribution over the K + 1 states.

Everything is float64 and computed from the total noise (``expm1`` / ``log1mexp``), exact at small
noise and where :math:`\alpha_t` reaches 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..schedules import Schedule
from ..utils import log1mexp
from .logspace import NEG_INF


def relative_noise(schedule: Schedule, t: Tensor) -> Tensor:
    r""":math:`\bar\sigma(t) - \bar\sigma(0) = -\log\alpha_t`, float64, the noise the transition applies."""
    t = t.to(torch.float64)
    return schedule.sigma_bar(t) - schedule.sigma_bar(torch.zeros_like(t))


def elbo_weight(schedule: Schedule, t: Tensor, timesteps: int) -> Tensor:
    r"""Weight :math:`w(t)` of the masked cross-entropy in the bound (module docstring), float64.

    Continuous time (``timesteps = 0``): :math:`\bar\sigma'(t)/\mathrm{expm1}(\bar\sigma(t)-\bar\sigma(0))
    = -\alpha_t'/(1-\alpha_t)` (Sahoo et al. 2024, Eq. 10; for the log-linear schedule with
    :math:`\epsilon = 0` it is 1/t); 0 where :math:`\alpha_t = 0` (all-mask: the integrand
    vanishes on such an interval, and t = 1 is a null set). T steps: :math:`T\,P(\text{unmask})`
    from t to :math:`s = t - 1/T`, i.e. :math:`T(\alpha_s - \alpha_t)/(1-\alpha_t)` (Shi et al.
    2024, Eq. 4; :func:`unmask_log_probs`), for t on the grid.

    Args:
        t: ``(B,)`` times in (0, 1); on the grid i / T (up to 1) when ``timesteps > 0``.
    """
    t = t.to(torch.float64)
    if timesteps > 0:
        log_move, _ = unmask_log_probs(schedule, (t - 1.0 / timesteps).clamp(min=0.0), t)
        return timesteps * log_move.exp()
    noise_t = relative_noise(schedule, t)
    return torch.where(torch.isinf(noise_t), 0.0, schedule.dsigma_bar(t) / torch.expm1(noise_t))


def unmask_log_probs(schedule: Schedule, s: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    r"""A masked token's reverse step t -> s < t: :math:`(\log P(\text{unmask}), \log P(\text{stay}))`.

    .. math::
        P(\text{unmask}) = \frac{\alpha_s - \alpha_t}{1-\alpha_t},\qquad
        P(\text{stay}) = \frac{1-\alpha_s}{1-\alpha_t},

    with :math:`\alpha` from this schedule (PITFALLS, "Ancestral step"; MDLM's caching update
    uses :math:`P(\text{unmask}) = 1 - s/t`, exact only for the log-linear schedule with
    :math:`\epsilon = 0`). An unmasking token takes the value :math:`x_0 \sim \hat p(x_0|x_t)`;
    this is :meth:`Transition.log_posterior_expected` for the absorbing transition. In log space:
    :math:`\log(\alpha_s - \alpha_t) = -b + \log(1 - e^{-(a - b)})`, :math:`a, b` the relative
    noise at t and s. ``(B,)`` float64 each.
    """
    a, b = relative_noise(schedule, t), relative_noise(schedule, s)
    log_norm = log1mexp(-a)
    log_move = torch.where(torch.isinf(b), NEG_INF, -b + log1mexp(b - a))  # alpha_s = 0: nothing unmasks
    return log_move - log_norm, log1mexp(-b) - log_norm


def masked_reverse_logits(log_p0: Tensor, log_move: Tensor, log_stay: Tensor) -> Tensor:
    r"""A masked token's :math:`\log p_\theta(x_s|x_t)` over the K + 1 states, ``(..., K + 1)``:
    :math:`\log\hat p(x_0) + \log P(\text{unmask})` on the K data ids and :math:`\log P(\text{stay})`
    on [MASK] (:func:`unmask_log_probs`; normalized when ``log_p0`` ``(..., K)`` is).
    ``log_move``, ``log_stay`` broadcast against ``log_p0`` with a trailing dimension of 1."""
    return torch.cat([log_p0 + log_move, log_stay.expand(*log_p0.shape[:-1], 1)], dim=-1)
