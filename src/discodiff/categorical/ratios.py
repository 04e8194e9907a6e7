r"""Probability ratios of a CTMC and what is built on them: the continuous-time ELBO integrand
(score entropy) and the analytic (Tweedie) reverse step.

A factorized CTMC (Campbell et al. 2022, Sec. 4.2; row convention of :mod:`.transitions`) changes
one token at a time. Its reverse rates are the forward rates into the current state times a ratio,

.. math::
    \hat R(t)[x, y] = R(t)[y, x]\;s(x)_y,\qquad
    s(x)_y \approx \frac{q_t(\ldots y \ldots)}{q_t(\ldots x \ldots)},

for a change of one token from x to y; :math:`s(x)_x = 1`. Every continuous-time method here is
a way to produce :math:`\log s` from a network (the x_0-prediction forms below, or SEDD's
log-score output); the bound and the samplers only ever see :math:`\log s` and the weights
:math:`R(t)[y, x]` (:meth:`~.transitions.ContinuousTimeTransition.jump_weights`).

Shapes: tokens ``(B, *D)`` long; ratios ``(B, *D, S)`` log values, ``-inf`` for a zero ratio.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .logspace import NEG_INF
from .mixing import MixingTransition
from .transitions import ContinuousTimeTransition, TimeLike, Transition, as_times, per_token


def log_ratios_joint(transition: Transition, x_t: Tensor, log_p0: Tensor, t: TimeLike) -> Tensor:
    r"""Ratios of the joint form ("(a)", D3PM's reverse step; UDLM's :math:`\bar x_\theta`):

    .. math::
        s(x)_y = \frac{(\tilde p\,\bar Q(t))[y]}{(\tilde p\,\bar Q(t))[x]}

    (Austin et al. 2021, Eq. 4 in the limit of a short step; Schiff et al. 2024, UDLM, where
    :math:`\tilde p\bar Q(t) \propto \bar x_\theta = K\bar\alpha_t\tilde p + (1-\bar\alpha_t)` for
    uniform transitions). Equal to :meth:`~.transitions.ContinuousTimeTransition.log_ratios` with
    :math:`\hat p \propto \tilde p(x_0)\,q(x|x_0)`; for absorbing transitions the two coincide.
    ``(B, *D)``, ``(B, *D, K)`` -> ``(B, *D, S)`` in ``log_p0``'s dtype.
    """
    log_joint = transition.log_propagate(log_p0, 0.0, t)
    return log_joint - log_joint.gather(-1, x_t[..., None])


def log_ratios_given_x0(
    transition: Transition, x_t: Tensor, x0: Tensor, t: TimeLike, *, dtype: torch.dtype
) -> Tensor:
    r"""The ratios of the process conditioned on the data, :math:`s^{x_0}(x)_y = q(y|x_0)/q(x|x_0)`.

    The target of denoising score entropy (Lou et al. 2024, Sec. 3.2) and the true reverse rates
    of the conditioned chain (Campbell et al. 2022, Prop. 1 with a point mass on :math:`x_0`).
    ``(B, *D)``, ``(B, *D)`` -> ``(B, *D, S)``; ``x_t`` must be reachable from ``x0``.
    """
    log_q = transition.log_marginal(x0, t, dtype=dtype)
    return log_q - log_q.gather(-1, x_t[..., None])


def score_entropy(log_ratio: Tensor, log_ratio_true: Tensor, weights: Tensor) -> Tensor:
    r"""Per-token integrand of the continuous-time ELBO (denoising score entropy with its constant):

    .. math::
        \ell = \sum_{y \ne x} R(t)[y, x]\,\Big(s_y - s^{x_0}_y + s^{x_0}_y \log\frac{s^{x_0}_y}{s_y}\Big),

    the rate of the path-space KL between the data-conditioned reverse chain (ratios
    :math:`s^{x_0}`) and the model's (ratios :math:`s`): Campbell et al. 2022, Prop. 2 (their
    :math:`\mathcal L_{CT}` with its constant, before the sampled-:math:`\tilde x` estimator of the
    cross term); Lou et al. 2024, Sec. 3.3, whose constant term :math:`K(a) = a(\log a - 1)` is the
    last two terms here, so :math:`\ell \ge 0` with equality at :math:`s = s^{x_0}`. Each summand
    is :math:`s^{x_0}_y\,\varphi(\log s_y - \log s^{x_0}_y)`, :math:`\varphi(d) = e^d - 1 - d`
    (computed as ``expm1(d) - d``), or :math:`s_y` where :math:`s^{x_0}_y = 0`.

    The backward pass keeps only the inputs: :math:`\partial\ell/\partial\log s_y = w_y(s_y - s^{x_0}_y)`.

    Args:
        log_ratio: ``(..., S)`` model :math:`\log s` (differentiable).
        log_ratio_true: ``(..., S)`` :math:`\log s^{x_0}` (constant; ``-inf`` for 0).
        weights: ``(..., S)`` :math:`R(t)[y, x]`, 0 at :math:`y = x` (constant).

    Returns:
        ``(...)`` nats per unit time.
    """
    return _ScoreEntropy.apply(log_ratio, log_ratio_true.detach(), weights.detach())


CHUNK_ELEMENTS = 1 << 22
"""Score entropy is evaluated over blocks of about this many entries (16 MB in float32), so its
temporaries stay small next to the ``(B, *D, S)`` inputs at large S."""


def _chunks(*tensors: Tensor) -> list[tuple[Tensor, ...]]:
    """Row blocks of ``(..., S)`` tensors flattened to ``(N, S)`` (views, no copies)."""
    flat = [x.reshape(-1, x.shape[-1]) for x in tensors]
    rows = max(1, CHUNK_ELEMENTS // flat[0].shape[-1])
    return list(zip(*(x.split(rows) for x in flat), strict=True))


def _score_entropy_terms(log_ratio: Tensor, log_ratio_true: Tensor, weights: Tensor) -> Tensor:
    """The summands of :func:`score_entropy` for one block, ``(n, S)``."""
    known = log_ratio_true > NEG_INF
    d = log_ratio - log_ratio_true.masked_fill(~known, 0.0)
    terms = torch.expm1(d).sub_(d).mul_(log_ratio_true.exp())  # s* phi(d); 0 where s* = 0
    terms = torch.where(known, terms, log_ratio.exp())
    return terms.mul_(weights).masked_fill_(weights <= 0, 0.0)


class _ScoreEntropy(torch.autograd.Function):
    r""":func:`score_entropy` evaluated block by block, with a backward pass that recomputes from the
    inputs: :math:`\partial\ell/\partial\log s_y = w_y(s_y - s^{x_0}_y)`."""

    @staticmethod
    def forward(ctx, log_ratio: Tensor, log_ratio_true: Tensor, weights: Tensor) -> Tensor:
        ctx.save_for_backward(log_ratio, log_ratio_true, weights)
        blocks = _chunks(log_ratio, log_ratio_true, weights)
        out = torch.cat([_score_entropy_terms(*block).sum(dim=-1) for block in blocks])
        return out.reshape(log_ratio.shape[:-1])

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        log_ratio, log_ratio_true, weights = ctx.saved_tensors
        out = torch.empty_like(log_ratio)
        blocks = _chunks(
            out, grad.reshape(-1, 1).expand(-1, log_ratio.shape[-1]), log_ratio, log_ratio_true, weights
        )
        for target, g, lr, lt, w in blocks:
            diff = lr.exp().sub_(lt.exp()).mul_(w).masked_fill_(w <= 0, 0.0)
            torch.mul(diff, g, out=target)
        return out, None, None


def staggered_ratios(
    transition: ContinuousTimeTransition, x_t: Tensor, ratio: Tensor, s: TimeLike, t: TimeLike
) -> Tensor:
    r""":math:`\big(s\,e^{-(\bar\sigma(t)-\bar\sigma(s))G}\big)_y`, the ratios carried back from t to s.

    For the mixing family :math:`e^{-\Delta G} = e^{\Delta}I - (e^{\Delta}-1)\mathbf 1\pi^\top`, so the
    result is :math:`e^{\Delta}s_y - (e^{\Delta}-1)\big(\sum_z s_z\big)\pi_y` (Lou et al. 2024, Sec. 4.2,
    "staggered score"). With exact ratios it is :math:`q_s(y)/q_t(x)` (a change of this token only);
    model ratios can make entries negative. Evaluated as
    :math:`s_y + g\big((s_y - \pi_y) - \pi_y\sum_{z\ne x}s_z\big)`, :math:`g = e^{\Delta} - 1` (``expm1``),
    using :math:`s_x = 1`: the textbook form cancels two terms of size :math:`e^{\Delta}` at
    :math:`y = x`, which at a step from t near 1 (:math:`e^{\Delta}` ~ 1e14) loses the whole result.
    Float64, linear space.

    Args:
        transition: a :class:`~.mixing.MixingTransition` (O(S) per token); other transitions have
            no closed form here and raise.
        x_t: ``(B, *D)`` long current states.
        ratio: ``(B, *D, S)`` float64 ratios :math:`s` (not logs), 1 at the current state;
            used as scratch space and restored.
        s, t: times with s < t.
    """
    if not isinstance(transition, MixingTransition):
        raise ValueError(
            f"the analytic (Tweedie) step from ratios needs a mixing transition (uniform, absorbing, "
            f"marginal); got {type(transition).__name__}"
        )
    log_keep, _ = transition.log_keep_move(s, t, x_t)
    g = per_token(torch.expm1(-log_keep), ratio.dim())
    pi = transition.log_stationary().exp().to(ratio.dtype)
    current = ratio.gather(-1, x_t[..., None])
    others = ratio.scatter_(-1, x_t[..., None], 0.0).sum(dim=-1, keepdim=True)  # in place, restored below
    ratio.scatter_(-1, x_t[..., None], current)
    out = (ratio - pi).addcmul_(pi.expand_as(ratio), others.expand_as(ratio), value=-1.0)
    return out.mul_(g).add_(ratio)


def tweedie_log_probs(
    transition: ContinuousTimeTransition, x_t: Tensor, log_ratio: Tensor, s: TimeLike, t: TimeLike
) -> Tensor:
    r"""Analytic reverse step from ratios ("Tweedie :math:`\tau`-leaping", Lou et al. 2024, Sec. 4.2):

    .. math::
        p(x_s = y\,|\,x_t = x) \propto
        \max\Big(0,\ \big(s\,e^{-(\bar\sigma(t)-\bar\sigma(s))G}\big)_y\Big)\;Q(s,t)[y, x],

    exact for each token given the exact ratios (:math:`q_s(y)\,Q(s,t)[y,x]/q_t(x)`); negative
    entries from model ratios are clipped to 0 (the sum over y of the staggered ratios is
    :math:`\sum_z s_z > 0`, so some entry stays positive). At s = 0 the step is restricted to the
    data ids (:math:`q_0` lives there), SEDD's final "denoising" step.

    Args:
        transition: a mixing transition (see :func:`staggered_ratios`).
        x_t: ``(B, *D)`` long current states.
        log_ratio: ``(B, *D, S)`` model :math:`\log s`.
        s, t: times with s < t; ``s`` may be 0.

    Returns:
        ``(B, *D, S)`` float64 unnormalized log-probabilities over :math:`x_s`.
    """
    staggered = staggered_ratios(transition, x_t, log_ratio.double().exp(), s, t)
    log_probs = (
        staggered.clamp_(min=0.0).log_().add_(transition.log_likelihood(x_t, s, t, dtype=torch.float64))
    )
    at_data = per_token(as_times(s, x_t) == 0, log_probs.dim())
    added_state = torch.arange(transition.num_states, device=x_t.device) >= transition.vocab_size
    return log_probs.masked_fill_(at_data & added_state, NEG_INF)
