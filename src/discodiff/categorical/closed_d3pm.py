r"""D3PM's step KL and cross-entropy in closed form for uniform and absorbing transitions, from the
logits ``z`` with no ``(B, *D, S)`` temporary (the generic path of :mod:`.d3pm` is the reference).

Per token: state x at t, data :math:`x_0`, previous time s < t, keep probabilities
:math:`\bar\alpha_s, \bar\alpha_t` from 0 and :math:`r = \bar\alpha_t/\bar\alpha_s` from s to t, and
:math:`\hat p = \mathrm{softmax}(z)`.

**Absorbing** (both reverse forms coincide): at [MASK] the posterior puts
:math:`P = (\bar\alpha_s-\bar\alpha_t)/(1-\bar\alpha_t)` on :math:`x_0` and the rest on [MASK], the
model :math:`P\,\hat p` and the same rest, so :math:`KL = -P\log\hat p(x_0)`; a clean token has KL 0.

**Uniform** (:math:`\beta = (1-\bar\alpha)/K`): the column :math:`c_y = Q(s,t)[y,x] = r\delta_{xy} + u`,
:math:`u = (1-r)/K`, multiplies both the posterior :math:`q_y \propto c_y(\bar\alpha_s\delta_{x_0y} +
\beta_s)` (three values) and the model :math:`p_y \propto c_y g_y` with :math:`g_y = a_y\hat p_y + C`:

- ``average`` (:meth:`.Transition.log_posterior_expected`): :math:`g = w\bar Q(s)`,
  :math:`w_y = \hat p_y/q(x|y)`, so :math:`a_y = \bar\alpha_s/\beta_t` off x,
  :math:`\bar\alpha_s/(\bar\alpha_t+\beta_t)` at x, :math:`C = \beta_s W`, :math:`W = \sum_y w_y`,
  and :math:`\sum_y g_y = W`;
- ``d3pm`` (:meth:`.Transition.log_posterior_joint`): :math:`g = \hat p\bar Q(s)`, :math:`a = \bar\alpha_s`,
  :math:`C = \beta_s`, :math:`\sum_y g_y = 1`.

Then :math:`Z = \sum_y c_y g_y = uG + r g_x` (G the sum above) and
:math:`KL = \sum_y q_y\log q_y - \sum_y q_y\log c_y - q_o\Lambda - q_x\log g_x
- [x_0\ne x]\,q_{x_0}\log g_{x_0} + \log Z`, with :math:`\Lambda = \sum_{y\notin\{x,x_0\}}\log g_y`
the one pass over the vocabulary (:func:`.ratio_rows.row_sums`) and :math:`q_o` the posterior off
:math:`\{x, x_0\}`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..utils import log1mexp
from .closed_forms import ClosedForm
from .masked_process import unmask_log_probs
from .normalized_rows import row_stats, stats_and_sums


def _log_rest(log_p: Tensor) -> Tensor:
    r""":math:`\log(1 - p)` from :math:`\log p \le 0`, with :math:`-\infty` and a zero gradient where
    :math:`\log p = 0` (a prediction confident beyond float precision: the other values' mass is 0
    to that precision). ``log1mexp(0)`` alone has an infinite derivative, which ``logaddexp`` turns
    into a NaN gradient (a D3PM uniform text run diverged so at step 239)."""
    below = log_p < 0
    return torch.where(below, log1mexp(torch.where(below, log_p, -1.0)), -math.inf)


def _xlogx(p: Tensor) -> Tensor:
    return torch.where(p > 0, p * torch.log(torch.where(p > 0, p, 1.0)), 0.0)


def step_kl_and_ce(
    cf: ClosedForm, z: Tensor, x_t: Tensor, x0: Tensor, s: Tensor, t: Tensor, form: str
) -> tuple[Tensor, Tensor]:
    r"""Per-token :math:`D_{KL}(q(x_s|x_t,x_0)\,\|\,p_\theta(x_s|x_t))` and :math:`-\log\hat p(x_0|x_t)`,
    ``(B, *D)`` each in ``z``'s dtype, from logits ``z`` ``(B, *D, K)``; ``s``, ``t`` ``(B,)``."""
    K, dtype = cf.K, z.dtype
    flat, xs, x0s = z.reshape(-1, K), x_t.reshape(-1), x0.reshape(-1)
    n = x_t[0].numel()

    def per_token(c: Tensor) -> Tensor:
        return c[:, None].expand(-1, n).reshape(-1)

    if cf.absorbing:
        lse, z_x0 = row_stats(flat, None, x0s)
        ce = lse - z_x0
        log_unmask, _ = unmask_log_probs(cf.transition.schedule, s.double(), t.double())
        weight = torch.where(xs == K, per_token(log_unmask.exp()).to(dtype), 0.0)
        return (weight * ce).view(x_t.shape), ce.view(x_t.shape)
    log_keep_s, log_move_s = (per_token(c) for c in cf.transition.log_keep_move(0.0, s, x_t))
    log_keep_t, log_move_t = (per_token(c) for c in cf.transition.log_keep_move(0.0, t, x_t))
    log_r = log_keep_t - log_keep_s
    log_beta_s, log_beta_t = log_move_s - math.log(K), log_move_t - math.log(K)
    log_u = cf.transition.log_keep_move(s, t, x_t)[1][:, None].expand(-1, n).reshape(-1) - math.log(K)
    differs = xs != x0s

    def terms(lse: Tensor, z_x: Tensor) -> tuple[Tensor, ...]:
        """(log a off x, log a at x, log C, log G) per token from the softmax statistics."""
        log_p_x = (z_x - lse).double()
        if form == "average":
            log_qx_x = torch.logaddexp(log_keep_t, log_beta_t)  # q(x_t = x | x_0 = x)
            log_w_sum = torch.logaddexp(log_p_x - log_qx_x, _log_rest(log_p_x) - log_beta_t)
            return log_keep_s - log_beta_t, log_keep_s - log_qx_x, log_beta_s + log_w_sum, log_w_sum
        return log_keep_s, log_keep_s, log_beta_s, torch.zeros_like(log_p_x)

    def coefficients(lse: Tensor, z_x: Tensor) -> tuple[Tensor, Tensor]:
        log_a, _, log_c, _ = terms(lse, z_x)
        return (log_a - lse.double()).to(dtype), log_c.to(dtype)

    lse, z_x, z_x0, _, log_sum, log_g_x0 = stats_and_sums(
        flat, None, xs, x0s, coefficients, need_log_sum=True
    )
    ce = lse - z_x0
    log_p_x = (z_x - lse).double()
    _, log_a_x, log_c, log_g_sum = terms(lse, z_x)
    log_g_x = torch.logaddexp(log_a_x + log_p_x, log_c)
    log_z = torch.logaddexp(log_u + log_g_sum, log_r + log_g_x)
    # the posterior's three values: at x, at x0 (if different), elsewhere
    log_c_x = torch.logaddexp(log_r, log_u)
    log_n_x = log_c_x + torch.where(differs, log_beta_s, torch.logaddexp(log_keep_s, log_beta_s))
    log_n_x0 = log_u + torch.logaddexp(log_keep_s, log_beta_s)
    log_n_o = log_u + log_beta_s
    log_norm = torch.where(differs, log_beta_t, torch.logaddexp(log_keep_t, log_beta_t))  # q(x|x0)
    q_x, q_x0, q_o = ((v - log_norm).exp() for v in (log_n_x, log_n_x0, log_n_o))
    q_x0 = torch.where(differs, q_x0, 0.0)
    others = K - 1 - differs.double()
    entropy_term = _xlogx(q_x) + _xlogx(q_x0) + others * _xlogx(q_o)
    cross_c = q_x * log_c_x + (1 - q_x) * log_u
    kl = (
        entropy_term
        - cross_c
        + log_z
        - q_x * log_g_x
        - q_o * log_sum.double()
        - torch.where(differs, q_x0 * log_g_x0.double(), 0.0)
    )
    return kl.to(dtype).view(x_t.shape), ce.view(x_t.shape)
