r"""Sampler steps of uniform and absorbing transitions on closed-form ratio rows
(:class:`.ratio_rows.RatioRows`, :math:`s_y = A e^{z_y} + C\pi_y`): each token's move and its target
are drawn apart, so only the tokens that move pay for a categorical draw over the vocabulary.

Every step here has, per token, a probability of moving and target weights of one shape,
:math:`v_y = \max(0,\ A'e^{z_y} + c)` over the data ids :math:`y \ne x` (:class:`Moves`):

- **Euler** (:func:`.jumps.euler_log_probs`): :math:`P(\text{move}) = \min(1, h\lambda)` with
  :math:`\lambda = \sum_{y\ne x}\hat R(x, y) = w\sum_{y\ne x}s_y` (w the row's constant weight), target
  :math:`\propto \hat R(x, \cdot) \propto s`;
- **tau-leaping** (:func:`.jumps.tau_leap`, nominal ids): jump count
  :math:`N \sim \mathrm{Poisson}(h\lambda)`, move if N = 1 (``reject``) or N >= 1 (``keep_one``),
  target :math:`\propto s`;
- **analytic** (:func:`.ratios.tweedie_log_probs`): with :math:`g = \mathrm{expm1}(\bar\sigma(t) -
  \bar\sigma(s))`, :math:`r = e^{-(\bar\sigma(t)-\bar\sigma(s))}` and :math:`\Sigma = \sum_{y\ne x}s_y`,
  the staggered ratios are :math:`(1+g)s_y - g(1+\Sigma)/K` off x and :math:`1 + g(K-1-\Sigma)/K` at x
  (uniform), weighted by the column :math:`Q(s,t)[y,x] = (1-r)/K + r\delta_{xy}`; absorbing, at
  [MASK]: :math:`g s_y` on the data ids against :math:`\max(0, 1 - g\Sigma)` for staying masked (0 at
  s = 0, where the step lands on the data ids). Unmasked tokens never move.

The draws are the generic steps' in distribution (tests compare :func:`implied_log_probs` with
them); categorical draws are float64 Gumbel-max (:func:`.sampling.sample_categorical`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .closed_forms import ClosedForm
from .jumps import MultiJump
from .logspace import NEG_INF
from .normalized_rows import row_stats
from .ratio_rows import RatioRows, blocks, row_sums, take, zero_columns
from .sampling import sample_categorical, uniform
from .transitions import as_times


@dataclass
class Moves:
    r"""Per active token: :math:`P(\text{move})` and target weights :math:`\max(0, e^{z_y + \log A'} + c)`.

    Attributes:
        index: ``(n,)`` flat token indices (``None``: every token).
        p_move: ``(n,)`` float64.
        log_a: ``(n,)`` float64 :math:`\log A'`.
        c: ``(n,)`` float64 offset (may be negative), or ``None`` for 0.
    """

    index: Tensor | None
    p_move: Tensor
    log_a: Tensor
    c: Tensor | None


def _per_token(c: Tensor, x: Tensor) -> Tensor:
    """``(B,)`` -> ``(N,)`` float64, one value per token of ``x`` ``(B, *D)``."""
    return c.to(torch.float64)[:, None].expand(-1, x[0].numel()).reshape(-1)


def _coefficients(cf: ClosedForm, rows: RatioRows, index: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """(log A, C pi) per active token, float64."""
    log_a = rows.log_a.reshape(-1).double()
    c = None if rows.log_c is None else (rows.log_c.reshape(-1).double() - math.log(cf.K)).exp()
    if index is not None:
        log_a, c = log_a[index], None if c is None else c[index]
    return log_a, c


def _ratio_sum(cf: ClosedForm, rows: RatioRows, x: Tensor, index: Tensor | None, log_a, c) -> Tensor:
    r""":math:`\Sigma = \sum_{y\ne x}s_y` per active token, float64."""
    flat, xs = rows.z.reshape(-1, cf.K), x.reshape(-1)
    xs = xs if index is None else xs[index]
    e_sum, _, _ = row_sums(flat, index, xs, None, log_a.to(flat.dtype), None, need_log_sum=False)
    total = e_sum.double()
    return total if c is None else total + c * (cf.K - 1)


def jump_moves(
    cf: ClosedForm, rows: RatioRows, x: Tensor, h: Tensor, t: Tensor, *, tau: bool, multi_jump: MultiJump
) -> Moves:
    r"""Euler (``tau=False``) or tau-leaping moves over a step of length ``h`` ``(B,)`` at time t."""
    rows = cf.explicit(rows, x)
    index = cf.active(x)
    log_a, c = _coefficients(cf, rows, index)
    rate = _per_token(cf.transition.schedule.dsigma_bar(as_times(t, x)), x)
    weight = rate if cf.absorbing else rate / cf.K
    lam = _per_token(h, x) * weight
    if index is not None:
        lam = lam[index]
    lam = lam * _ratio_sum(cf, rows, x, index, log_a, c)
    if not tau:
        p_move = lam.clamp(max=1.0)
    elif multi_jump == "reject":
        p_move = lam * torch.exp(-lam)  # P(N = 1)
    else:
        p_move = -torch.expm1(-lam)  # P(N >= 1)
    return Moves(index, torch.nan_to_num(p_move, nan=1.0), log_a, c)


def analytic_moves(cf: ClosedForm, rows: RatioRows, x: Tensor, s: Tensor, t: Tensor) -> Moves:
    """The analytic (Tweedie) step from t to s < t (module docstring)."""
    rows = cf.explicit(rows, x)
    index = cf.active(x)
    log_keep, _ = cf.transition.log_keep_move(s, t, x)  # log r, per example
    log_r = _per_token(log_keep, x)
    g = torch.expm1(-log_r)
    if index is not None:
        log_r, g = log_r[index], g[index]
    log_a, c = _coefficients(cf, rows, index)
    if cf.absorbing:
        flat, xs = rows.z.reshape(-1, cf.K), x.reshape(-1)[index]
        lse, _ = row_stats(flat, index, xs)
        mass = g * torch.exp(log_a + lse.double())  # g * Sigma
        at_data = _per_token(as_times(s, x) == 0, x)[index] > 0
        p_move = torch.where(at_data, 1.0, mass / (mass + (1 - mass).clamp(min=0.0)))
        return Moves(index, p_move, log_a, None)
    total = _ratio_sum(cf, rows, x, index, log_a, c)
    log_a_new = log_a + torch.log1p(g)
    c_new = (1 + g) * (0.0 if c is None else c) - g * (1 + total) / cf.K
    stay = (1 + g * ((cf.K - 1) - total) / cf.K).clamp(min=0.0)
    move_mass = _clamped_sum(rows.z.reshape(-1, cf.K), x.reshape(-1), log_a_new, c_new)
    r = log_r.exp()
    move = move_mass * (1 - r) / cf.K
    norm = move + stay * (r + (1 - r) / cf.K)
    return Moves(index, torch.where(norm > 0, move / norm, 0.0), log_a_new, c_new)


def _clamped_sum(z: Tensor, x: Tensor, log_a: Tensor, c: Tensor) -> Tensor:
    r""":math:`\sum_{y\ne x}\max(0, e^{z_y + \log A} + c)` per row of ``z`` ``(N, K)``, float64."""
    out = torch.empty(z.shape[0], dtype=torch.float64, device=z.device)
    for lo, hi in blocks(z.shape[0], z.shape[1]):
        v = (z[lo:hi].double() + log_a[lo:hi, None]).exp_().add_(c[lo:hi, None]).clamp_(min=0.0)
        out[lo:hi] = zero_columns(v, [(x[lo:hi], x[lo:hi] < z.shape[1])]).sum(1)
    return out


def target_log_weights(z: Tensor, x: Tensor, log_a: Tensor, c: Tensor | None) -> Tensor:
    r""":math:`\log\max(0, e^{z_y + \log A} + c)` for rows ``z`` ``(m, K)``, ``-inf`` at y = x; float64."""
    logits = z.double() + log_a[:, None]
    if c is not None:
        logits = logits.exp_().add_(c[:, None]).clamp_(min=0.0).log_()
    col = x.clamp(max=z.shape[1] - 1)[:, None]
    return logits.scatter_(1, col, torch.where((x < z.shape[1])[:, None], NEG_INF, logits.gather(1, col)))


def sample_moves(z: Tensor, x: Tensor, moves: Moves, *, generator: torch.Generator | None) -> Tensor:
    """Draw which tokens move and, for those, their targets; ``z`` ``(B, *D, K)``, ``x`` ``(B, *D)``."""
    flat, xs = z.reshape(-1, z.shape[-1]), x.reshape(-1)
    n = moves.p_move.numel()
    u = uniform((n,), generator=generator, device=x.device)
    chosen = (u < moves.p_move).nonzero().squeeze(1)  # positions among the active tokens
    tokens = chosen if moves.index is None else moves.index[chosen]
    out = xs.clone()
    for lo, hi in blocks(tokens.numel(), flat.shape[1]):
        pick = chosen[lo:hi]
        c = None if moves.c is None else moves.c[pick]
        logits = target_log_weights(take(flat, tokens, lo, hi), xs[tokens[lo:hi]], moves.log_a[pick], c)
        out[tokens[lo:hi]] = sample_categorical(logits, generator=generator)
    return out.view(x.shape)


def implied_log_probs(cf: ClosedForm, z: Tensor, x: Tensor, moves: Moves) -> Tensor:
    """The per-token distribution that :func:`sample_moves` draws from, ``(B, *D, S)`` float64 (tests)."""
    flat, xs = z.reshape(-1, cf.K), x.reshape(-1)
    out = torch.full((xs.numel(), cf.transition.num_states), NEG_INF, dtype=torch.float64, device=x.device)
    out.scatter_(1, xs[:, None], 0.0)
    index = torch.arange(xs.numel(), device=x.device) if moves.index is None else moves.index
    target = torch.log_softmax(target_log_weights(flat[index], xs[index], moves.log_a, moves.c), dim=1)
    rows = torch.full((index.numel(), out.shape[1]), NEG_INF, dtype=torch.float64, device=x.device)
    rows[:, : cf.K] = target + moves.p_move.log()[:, None]
    rows.scatter_(1, xs[index, None], torch.log1p(-moves.p_move)[:, None])
    out[index] = rows
    return out.view(*x.shape, -1)


def jump_step(
    cf: ClosedForm,
    rows: RatioRows,
    x: Tensor,
    s: Tensor,
    t: Tensor,
    *,
    sampler: str,
    multi_jump: MultiJump,
    generator: torch.Generator | None,
) -> Tensor:
    """One ``euler``, ``tau_leaping`` or ``analytic`` step from t to s for the tokens ``x``."""
    if sampler == "analytic":
        moves = analytic_moves(cf, rows, x, s, t)
    else:
        moves = jump_moves(cf, rows, x, t - s, t, tau=sampler != "euler", multi_jump=multi_jump)
    return sample_moves(rows.z, x, moves, generator=generator)
