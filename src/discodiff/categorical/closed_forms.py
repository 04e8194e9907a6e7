r"""Closed forms of the continuous-time bound, reverse rates and sampler steps for uniform and
absorbing transitions, on model ratios given as :class:`.ratio_rows.RatioRows`
(:math:`s_y = A e^{z_y} + C\pi_y`).

The generic path of :mod:`.ratios` (dense ``(B, *D, S)`` ratios, targets and weights) stays the
reference: tests check every closed form here against it to float precision. Notation per token:
current state x, data :math:`x_0`, keep probability :math:`\bar\alpha = e^{-\Delta}`,
:math:`\Delta = \bar\sigma(t) - \bar\sigma(0)`, rate scale :math:`\bar\sigma'(t)`.

**Score entropy** (:func:`.ratios.score_entropy`, term by term
:math:`\ell = \sum_{y\ne x} w\,s^*_y\varphi(\log s_y - \log s^*_y)` with :math:`\varphi(d) = e^d - 1 - d`
and :math:`s^* \varphi \to s` where :math:`s^* = 0`). The weights :math:`w = R(t)[y, x] =
\bar\sigma'\pi_x` are constant in each row and the target
:math:`s^*_y = (\bar\alpha\,\delta_{x_0 y} + (1-\bar\alpha)\pi_y)/q(x|x_0)` takes two values, so

- uniform (:math:`\pi = 1/K`, :math:`\beta = (1-\bar\alpha)/K`, :math:`w = \bar\sigma'/K`): with
  :math:`\rho = \beta/q(x|x_0)` (the target off :math:`x_0`) and n the number of ids outside
  {x, x_0},
  :math:`\ell/w = [x_0\ne x]\,r\varphi(\log s_{x_0} - \log r) + \sum_{y\notin\{x,x_0\}} s_y - \rho\sum\log s_y
  + n\rho(\log\rho - 1)`, :math:`r = 1 + \bar\alpha/\beta`;
- absorbing (only x = [MASK] has weight :math:`\bar\sigma'`; :math:`a = 1/\mathrm{expm1}(\Delta)`):
  :math:`\ell/\bar\sigma' = a\varphi(\log s_{x_0} - \log a) + \sum_{y\ne x_0} s_y` (PITFALLS "Score
  entropy": :math:`\sum_y s_y - a\log s_{x_0} + a(\log a - 1)`).

The :math:`x_0` term is kept apart so that no two terms of size :math:`\bar\alpha/\beta` cancel.

**x_0-prediction rows** (:func:`x0_rows`, :math:`\hat p = \mathrm{softmax}(z)`): for the average form
(Campbell et al. 2022, Prop. 1) the normalizer at x is :math:`\sum_{x_0}\hat p = 1`, so
:math:`s_y = (\bar\alpha/\beta)\hat p_y + 1 - \hat p_x\bar\alpha/(\bar\alpha+\beta)` (uniform); the joint form
(UDLM) gives :math:`s_y = (\bar\alpha\hat p_y + \beta)/(\bar\alpha\hat p_x + \beta)`; for absorbing both are
:math:`s_y = \hat p_y/\mathrm{expm1}(\Delta)` at [MASK].

**Samplers** (:mod:`.closed_steps`) draw a token's move and its target separately.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from .mixing import AbsorbingTransition, MixingTransition, UniformTransition
from .normalized_rows import row_stats, stats_and_sums
from .ratio_rows import RatioRows, row_sums
from .transitions import as_times

Form = Literal["average", "d3pm"]


class ClosedForm:
    """The closed forms of one uniform or absorbing transition (see the module docstring)."""

    def __init__(self, transition: MixingTransition) -> None:
        self.transition = transition
        self.absorbing = isinstance(transition, AbsorbingTransition)
        self.K = transition.vocab_size

    # ---- per-token schedule quantities ---------------------------------------------------------

    def noise(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        r""":math:`(\log\bar\alpha, \log(1-\bar\alpha), \bar\sigma'(t))` per token, float64 ``(N,)``."""
        log_keep, log_move = self.transition.log_keep_move(0.0, t, x)
        rate = self.transition.schedule.dsigma_bar(as_times(t, x))
        n = x[0].numel()
        return tuple(c[:, None].expand(-1, n).reshape(-1) for c in (log_keep, log_move, rate))

    def active(self, x: Tensor) -> Tensor | None:
        """Flat indices of the tokens whose rows have weight (absorbing: [MASK]); ``None``: all."""
        return (x.reshape(-1) == self.K).nonzero().squeeze(1) if self.absorbing else None

    # ---- ratio rows from an x_0-prediction -----------------------------------------------------

    def x0_rows(self, z: Tensor, x: Tensor, t: Tensor, form: Form) -> RatioRows:
        r"""Rows of the x_0-prediction ratios (module docstring) from logits ``z`` ``(B, *D, K)``:
        their coefficients depend on the softmax normalizer and on :math:`\hat p_x`."""
        log_keep, log_move, _ = self.noise(x, t)
        log_beta = log_move - math.log(self.K)

        def coefficients(lse: Tensor, z_x: Tensor, index: Tensor | None) -> tuple[Tensor, Tensor | None]:
            keep, move, beta = (c if index is None else c[index] for c in (log_keep, log_move, log_beta))
            lse64 = lse.double()
            if self.absorbing:  # at [MASK]: p_y / expm1(Delta); other rows carry no weight
                return (keep - move - lse64).to(lse.dtype), None
            log_p_x = z_x.double() - lse64
            if form == "average":
                log_a = keep - beta - lse64
                log_cpi = torch.log1p(-torch.exp(log_p_x + keep - torch.logaddexp(keep, beta)))
            else:
                log_norm = torch.logaddexp(keep + log_p_x, beta)
                log_a, log_cpi = keep - lse64 - log_norm, beta - log_norm
            return log_a.to(lse.dtype), log_cpi.to(lse.dtype)

        return RatioRows(z, coefficients=coefficients)

    def explicit(self, rows: RatioRows, x: Tensor) -> RatioRows:
        r"""``rows`` with :math:`\log A`, :math:`\log C` per token (computing the softmax statistics
        when the coefficients depend on them; the samplers and the dense rates use these)."""
        if rows.coefficients is None:
            return rows
        flat, xs = rows.z.reshape(-1, self.K), x.reshape(-1)
        active = self.active(x)
        lse, z_x = row_stats(flat, active, xs if active is None else xs[active])
        log_a, log_cpi = rows.coefficients(lse, z_x, active)
        if active is not None:  # the other rows carry no weight
            log_a = rows.z.new_zeros(xs.shape).index_put((active,), log_a)
        log_c = None if log_cpi is None else log_cpi + math.log(self.K)
        return RatioRows(rows.z, log_a.view(x.shape), None if log_c is None else log_c.view(x.shape))

    # ---- the bound -----------------------------------------------------------------------------

    def score_entropy(
        self, rows: RatioRows, x: Tensor, x0: Tensor, t: Tensor, *, dtype: torch.dtype | None = None
    ) -> Tensor:
        r"""Per-token :func:`.ratios.score_entropy` with the data-conditioned target, ``(B, *D)``."""
        z = rows.z if dtype is None else rows.z.to(dtype)
        dtype = z.dtype
        flat, xs, x0s = z.reshape(-1, self.K), x.reshape(-1), x0.reshape(-1)
        log_keep, log_move, rate = self.noise(x, t)
        active = self.active(x)
        if active is not None:
            xs, x0s, log_keep, log_move, rate = (c[active] for c in (xs, x0s, log_keep, log_move, rate))
        e_sum, log_sum, log_s_x0, log_cpi = self._sums(rows, flat, active, xs, x0s, dtype)
        if self.absorbing:
            log_target = (log_keep - log_move).to(dtype)  # log a = -log expm1(Delta)
            terms = _phi_term(log_s_x0, log_target) + e_sum
            out = torch.zeros(x.numel(), dtype=dtype, device=x.device)
            return out.index_put((active,), rate.to(dtype) * terms).view(x.shape)
        differs = xs != x0s
        log_beta = log_move - math.log(self.K)
        log_q = torch.where(differs, log_beta, torch.logaddexp(log_keep, log_beta))
        log_rho = (log_beta - log_q).to(dtype)  # the target off x0
        log_r = torch.where(differs, torch.logaddexp(log_keep, log_beta) - log_beta, 0.0).to(dtype)
        n = (self.K - 1 - differs.long()).to(dtype)
        c_sum = 0.0 if log_cpi is None else n * log_cpi.exp()  # sum of C pi over those ids
        rho = log_rho.exp()
        others = e_sum + c_sum - rho * log_sum + n * rho * (log_rho - 1)
        x0_term = torch.where(differs, _phi_term(torch.where(differs, log_s_x0, log_r), log_r), 0.0)
        return ((rate / self.K).to(dtype) * (x0_term + others)).view(x.shape)

    def _sums(self, rows: RatioRows, flat: Tensor, active: Tensor | None, xs: Tensor, x0s: Tensor, dtype):
        """(E, Λ, log s_x0, log C pi) of the selected rows (:func:`.ratio_rows.row_sums`)."""
        need_log_sum = not self.absorbing
        if rows.coefficients is not None:

            def coefficients(lse: Tensor, z_x: Tensor) -> tuple[Tensor, Tensor | None]:
                return rows.coefficients(lse, z_x, active)

            lse, z_x, _, e_sum, log_sum, log_s_x0 = stats_and_sums(
                flat, active, xs, x0s, coefficients, need_log_sum=need_log_sum
            )
            return e_sum, log_sum, log_s_x0, coefficients(lse, z_x)[1]
        log_a = rows.log_a.reshape(-1).to(dtype)
        log_cpi = None if rows.log_c is None else rows.log_c.reshape(-1).to(dtype) - math.log(self.K)
        if active is not None:
            log_a, log_cpi = log_a[active], None if log_cpi is None else log_cpi[active]
        e_sum, log_sum, log_s_x0 = row_sums(flat, active, xs, x0s, log_a, log_cpi, need_log_sum=need_log_sum)
        return e_sum, log_sum, log_s_x0, log_cpi

    # ---- reverse rates -------------------------------------------------------------------------

    def reverse_rates(self, rows: RatioRows, x: Tensor, t: Tensor) -> Tensor:
        r"""Off-diagonal reverse rates :math:`R(t)[y, x]\,s_y` (0 at y = x), ``(B, *D, S)``, in the
        dtype of ``rows.z``."""
        rows = self.explicit(rows, x)
        S, z = self.transition.num_states, rows.z
        _, _, rate = self.noise(x, t)
        active = self.active(x)
        if active is None:
            weight = (rate / self.K).to(z.dtype).view(*x.shape, 1)
            out = (z + rows.log_a[..., None]).exp_()
            if rows.log_c is not None:
                out += (rows.log_c - math.log(self.K)).exp()[..., None]
            return out.mul_(weight).scatter_(-1, x[..., None], 0.0)
        out = z.new_zeros(x.numel(), S)
        flat, log_a = z.reshape(-1, self.K)[active], rows.log_a.reshape(-1)[active]
        out[active, : self.K] = torch.exp(flat + log_a[:, None]) * rate[active, None].to(z.dtype)
        return out.view(*x.shape, S)


def _phi_term(log_s: Tensor, log_target: Tensor) -> Tensor:
    r""":math:`s^*\varphi(\log s - \log s^*)`, :math:`\varphi(d) = \mathrm{expm1}(d) - d`."""
    d = log_s - log_target
    return log_target.exp() * (torch.expm1(d) - d)


def closed_form(transition) -> ClosedForm | None:
    """The closed forms of a uniform or absorbing transition; ``None`` for every other one (the
    generic path applies)."""
    if isinstance(transition, (UniformTransition, AbsorbingTransition)):
        return ClosedForm(transition)
    return None
