r"""Forward transitions of categorical diffusion: :math:`q(x_t|x_s)` for any :math:`0 \le s < t \le 1`.

**Matrix convention (rows).** :math:`Q(s,t)_{ij} = q(x_t = j\,|\,x_s = i)`: each row sums to 1, a
distribution is a row vector and evolves as :math:`p \mapsto p\,Q(s,t)`, and kernels compose as
:math:`Q(r,t) = Q(r,s)\,Q(s,t)`. This is the convention of Austin et al. 2021 (D3PM, Sec. 3) and
their code; the lecture notes in the reading list write the transpose (:math:`\mathrm{Cat}(Q_t
x_{t-1})`, columns summing to 1). A T-step discrete-time chain lives on the grid
:math:`t_i = i/T` with step matrices :math:`Q_i = Q(t_{i-1}, t_i)` and cumulative products
:math:`\bar Q_i = Q(0, t_i) = Q_1 Q_2 \cdots Q_i` (D3PM, Eq. 3).

**States.** Ids ``0 .. K-1`` are the data categories (``vocab_size`` K); a transition may add
states (absorbing adds [MASK] = K), ``num_states`` S. A distribution over :math:`x_0` always has
K entries; distributions over :math:`x_t` have S.

**Shapes and dtypes.** Tokens ``x`` are long ``(B, *D)``; times are floats or ``(B,)`` tensors
(computed in float64); every distribution is returned as log-probabilities ``(B, *D, S)`` in the
requested (or the input's) dtype, with ``-inf`` for impossible states.

Each transition implements five primitives: the row :meth:`~Transition.log_transition`, the column
:meth:`~Transition.log_likelihood`, :meth:`~Transition.log_propagate`,
:meth:`~Transition.sample_transition` and :meth:`~Transition.log_stationary`. Marginals, the three
posteriors and the prior are built from them once, in this base class.

The mixing family (uniform, absorbing, marginal) has the closed form
:math:`Q(s,t) = r\,I + (1-r)\,\mathbf 1\pi^\top`, :math:`r = \bar\alpha(t)/\bar\alpha(s)`, and is
computed matrix-free in O(S) per token (:class:`MixingTransition`). Dense transitions (discretized
Gaussian, user matrices, rate matrices) are in :mod:`.matrix_transitions`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..schedules import Schedule
from ..utils import sum_except_batch
from .logspace import NEG_INF, categorical_kl, log_normalize

TimeLike = Tensor | float
"""A time in [0, 1]: a float, a 0-d tensor, or one time per example ``(B,)``."""


def as_times(t: TimeLike, x: Tensor) -> Tensor:
    """Times as a ``(B,)`` float64 tensor on ``x``'s device (``x``: ``(B, ...)``)."""
    t = torch.as_tensor(t, dtype=torch.float64, device=x.device)
    if t.dim() == 0:
        t = t.expand(x.shape[0])
    if t.shape != (x.shape[0],):
        raise ValueError(f"times must be a float or a ({x.shape[0]},) tensor, got shape {tuple(t.shape)}")
    return t


def per_token(c: Tensor, ndim: int) -> Tensor:
    """``(B,)`` -> ``(B, 1, ..., 1)`` with ``ndim`` dimensions, to broadcast over tokens and states."""
    return c.reshape(c.shape + (1,) * (ndim - c.dim()))


class Transition(nn.Module, ABC):
    r"""A family of forward kernels :math:`Q(s,t)` over ``num_states`` states (see module docstring).

    An ``nn.Module`` only so that its constant tensors (non-persistent buffers) follow the method
    across devices; it has no parameters and its buffers are not saved in checkpoints.
    """

    def __init__(self, vocab_size: int, num_states: int) -> None:
        super().__init__()
        if vocab_size < 2:
            raise ValueError(f"vocab_size must be >= 2, got {vocab_size}")
        self.vocab_size = vocab_size
        self.num_states = num_states

    # ---- primitives ----------------------------------------------------------------------------

    @abstractmethod
    def log_transition(self, x_s: Tensor, s: TimeLike, t: TimeLike, *, dtype: torch.dtype) -> Tensor:
        r"""Row :math:`\log Q(s,t)[x_s, :] = \log q(x_t = \cdot\,|\,x_s)`: ``(B, *D)`` -> ``(B, *D, S)``."""

    @abstractmethod
    def log_likelihood(self, x_t: Tensor, s: TimeLike, t: TimeLike, *, dtype: torch.dtype) -> Tensor:
        r"""Column :math:`\log Q(s,t)[:, x_t] = \log q(x_t|x_s = \cdot)`: ``(B, *D)`` -> ``(B, *D, S)``."""

    @abstractmethod
    def log_propagate(self, log_p: Tensor, s: TimeLike, t: TimeLike) -> Tensor:
        r""":math:`\log(p\,Q(s,t))` for (unnormalized) ``log_p`` ``(B, *D, K or S)`` -> ``(B, *D, S)``.

        A ``(..., K)`` input is a distribution over data ids (zero mass on added states).
        """

    @abstractmethod
    def sample_transition(self, x_s: Tensor, s: TimeLike, t: TimeLike, u: Tensor) -> Tensor:
        r"""Draw :math:`x_t \sim q(x_t|x_s)` from uniforms ``u`` ``(B, *D, 2)`` float64 in [0, 1)."""

    @abstractmethod
    def log_stationary(self) -> Tensor:
        r"""Stationary distribution :math:`\pi` (:math:`\pi Q = \pi`), float64 ``(S,)`` log-probabilities."""

    # ---- derived, the same for every transition ------------------------------------------------

    def log_marginal(self, x0: Tensor, t: TimeLike, *, dtype: torch.dtype) -> Tensor:
        r""":math:`\log q(x_t|x_0) = \log \bar Q(t)[x_0, :]`, :math:`\bar Q(t) = Q(0, t)` (D3PM, Eq. 3)."""
        return self.log_transition(x0, 0.0, t, dtype=dtype)

    def sample_marginal(self, x0: Tensor, t: TimeLike, u: Tensor) -> Tensor:
        r"""Draw :math:`x_t \sim q(x_t|x_0)` from uniforms ``u`` ``(B, *D, 2)``."""
        return self.sample_transition(x0, 0.0, t, u)

    def log_posterior(
        self, x_t: Tensor, x0: Tensor, s: TimeLike, t: TimeLike, *, dtype: torch.dtype
    ) -> Tensor:
        r"""Bayes posterior :math:`\log q(x_s|x_t, x_0)` for a one-hot :math:`x_0` (D3PM, Eq. 3):

        .. math::
            q(x_s|x_t,x_0) = \frac{Q(s,t)[x_s, x_t]\;\bar Q(s)[x_0, x_s]}{\bar Q(t)[x_0, x_t]}.

        The denominator is the sum of the numerator over :math:`x_s` (Chapman-Kolmogorov), applied
        as a log-normalization. At s = 0 it is the point mass on :math:`x_0`.

        Args:
            x_t, x0: ``(B, *D)`` long; ``x0`` data ids, ``x_t`` state ids.
            s, t: times with s < t.

        Returns:
            ``(B, *D, S)`` log-probabilities over :math:`x_s`.
        """
        log_joint = self.log_likelihood(x_t, s, t, dtype=dtype)
        log_joint += self.log_marginal(x0, s, dtype=dtype)  # long inputs: never part of a graph
        return log_normalize(log_joint)

    def log_posterior_expected(self, x_t: Tensor, log_p0: Tensor, s: TimeLike, t: TimeLike) -> Tensor:
        r"""Average of posteriors :math:`\sum_{x_0} \hat p(x_0)\,q(x_s|x_t,x_0)` (DiGress's form).

        .. math::
            \sum_{x_0}\hat p(x_0)\frac{Q(s,t)[x_s,x_t]\,\bar Q(s)[x_0,x_s]}{\bar Q(t)[x_0,x_t]}
            = Q(s,t)[x_s, x_t]\;(w\,\bar Q(s))[x_s],\qquad w(x_0) = \frac{\hat p(x_0)}{\bar Q(t)[x_0,x_t]},

        (Vignac et al. 2023, DiGress, Sec. 3; PITFALLS "(b)"). :math:`\hat p` is restricted to the
        states that can produce :math:`x_t` (:math:`\bar Q(t)[x_0,x_t] > 0`, where the exact
        posterior lives) and renormalized, so the result is a normalized distribution.

        Args:
            x_t: ``(B, *D)`` long state ids.
            log_p0: ``(B, *D, K)`` normalized log-probabilities over :math:`x_0`.
            s, t: times with s < t.

        Returns:
            ``(B, *D, S)`` log-probabilities over :math:`x_s`, in ``log_p0``'s dtype.
        """
        log_joint = self.log_propagate(self._likelihood_ratio(x_t, log_p0, t), 0.0, s)
        log_joint += self.log_likelihood(x_t, s, t, dtype=log_p0.dtype)
        return log_normalize(log_joint)

    def _likelihood_ratio(self, x_t: Tensor, log_p0: Tensor, t: TimeLike) -> Tensor:
        r""":math:`\log(\hat p(x_0)/q(x_t|x_0))` where :math:`q(x_t|x_0) > 0`, else ``-inf``; ``(B, *D, K)``.

        A separate function so that the likelihood column is freed before the propagation.
        """
        log_lik0 = self.log_likelihood(x_t, 0.0, t, dtype=log_p0.dtype)[..., : self.vocab_size]
        return torch.where(log_lik0 > NEG_INF, log_p0 - log_lik0, NEG_INF)

    def log_posterior_joint(self, x_t: Tensor, log_p0: Tensor, s: TimeLike, t: TimeLike) -> Tensor:
        r"""Posterior of the joint, :math:`\propto \sum_{x_0}\tilde p(x_0)\,q(x_s, x_t|x_0)` (D3PM's form).

        .. math::
            p(x_s|x_t) \propto Q(s,t)[x_s, x_t]\;(\tilde p\,\bar Q(s))[x_s]

        (Austin et al. 2021, Eq. 4; PITFALLS "(a)"). Equal to :meth:`log_posterior_expected` with
        :math:`\tilde p \propto \hat p(x_0)/q(x_t|x_0)`; the two coincide for absorbing transitions.

        Args:
            x_t: ``(B, *D)`` long state ids.
            log_p0: ``(B, *D, K)`` log-probabilities over :math:`x_0`.
            s, t: times with s < t.

        Returns:
            ``(B, *D, S)`` log-probabilities over :math:`x_s`, in ``log_p0``'s dtype.
        """
        log_joint = self.log_propagate(log_p0, 0.0, s)
        log_joint += self.log_likelihood(x_t, s, t, dtype=log_p0.dtype)
        return log_normalize(log_joint)

    def restrict_x0(self, log_p0: Tensor, x_t: Tensor, t: TimeLike) -> Tensor:
        r""":math:`\hat p(x_0)` restricted to :math:`\{x_0 : q(x_t|x_0) > 0\}` and renormalized.

        The exact posterior :math:`p(x_0|x_t)` has no mass outside that set (for absorbing: an
        unmasked token is its own :math:`x_0`, MDLM's "carry-over"). ``(B, *D, K)`` -> ``(B, *D, K)``.
        """
        log_lik0 = self.log_likelihood(x_t, 0.0, t, dtype=log_p0.dtype)[..., : self.vocab_size]
        return log_normalize(torch.where(log_lik0 > NEG_INF, log_p0, NEG_INF))

    def log_prior(self) -> Tensor:
        r"""Where the reverse process starts: :math:`p(x_1) = u\,\bar Q(1)`, u uniform over data ids.

        Equal to :math:`\pi` when :math:`\bar Q(1)` has reached the stationary distribution, and
        always a proper prior for the bound: an absorbing chain whose schedule keeps
        :math:`\bar\alpha(1) > 0` gets mass :math:`\bar\alpha(1)/K` on each data id instead of an
        infinite prior KL against the point mass on [MASK] (PITFALLS, "Absorbing prior").
        Float64 ``(S,)``.
        """
        device = self.log_stationary().device
        log_u = torch.full(
            (1, self.vocab_size), -math.log(self.vocab_size), dtype=torch.float64, device=device
        )
        return self.log_propagate(log_u, 0.0, 1.0)[0]

    def prior_kl(self, x0: Tensor, *, dtype: torch.dtype = torch.float32) -> Tensor:
        r"""The bound's prior term :math:`D_{KL}(q(x_1|x_0)\,\|\,p(x_1))` summed over tokens, ``(B,)``
        nats (Austin et al. 2021, Eq. 5, :math:`L_T`), against :meth:`log_prior`."""
        log_q1 = self.log_marginal(x0, 1.0, dtype=dtype)
        return sum_except_batch(categorical_kl(log_q1, self.log_prior().to(dtype)))

    def _pad_states(self, log_p: Tensor) -> Tensor:
        """A distribution over data ids ``(..., K)`` as one over all states ``(..., S)``."""
        if log_p.shape[-1] == self.num_states:
            return log_p
        if log_p.shape[-1] != self.vocab_size:
            raise ValueError(
                f"expected {self.vocab_size} (data ids) or {self.num_states} (states) entries in the "
                f"last dimension, got {log_p.shape[-1]}"
            )
        return F.pad(log_p, (0, self.num_states - self.vocab_size), value=NEG_INF)


class ContinuousTimeTransition(Transition):
    r"""A transition generated by a CTMC: :math:`Q(s,t) = \exp\big((\bar\sigma(t)-\bar\sigma(s))\,G\big)`.

    The forward rate matrix at time t is :math:`R(t) = \bar\sigma'(t)\,G` (Campbell et al. 2022,
    Sec. 3; Lou et al. 2024, Sec. 3.3, with :math:`Q_t = \sigma(t) Q`), with a fixed generator G
    (off-diagonal entries >= 0, rows sum to 0) and the total noise of :attr:`schedule`. Defined at
    every time, not only on a grid: the continuous-time methods build on this class.
    """

    schedule: Schedule

    @abstractmethod
    def generator_row(self, x: Tensor, *, dtype: torch.dtype) -> Tensor:
        r"""Rates out of ``x``, :math:`G[x, :]` (real, diagonal :math:`-\sum_{j \ne x} G[x, j]`):
        ``(B, *D)`` -> ``(B, *D, S)``."""

    @abstractmethod
    def generator_column(self, x: Tensor, *, dtype: torch.dtype) -> Tensor:
        r"""Rates into ``x``, :math:`G[:, x]` as a function of the source state:
        ``(B, *D)`` -> ``(B, *D, S)``."""

    def rate_row(self, x: Tensor, t: TimeLike, *, dtype: torch.dtype) -> Tensor:
        r"""Forward rates out of ``x`` at time t, :math:`R(t)[x, :] = \bar\sigma'(t)\,G[x, :]`."""
        scale = per_token(self.schedule.dsigma_bar(as_times(t, x)), x.dim() + 1)
        return scale.to(dtype) * self.generator_row(x, dtype=dtype)

    def jump_weights(self, x: Tensor, t: TimeLike, *, dtype: torch.dtype) -> Tensor:
        r"""Forward rates into ``x`` from every other state, :math:`R(t)[y, x] = \bar\sigma'(t)\,G[y, x]`
        for :math:`y \ne x`, and 0 at :math:`y = x`: the factor that turns a probability ratio into a
        reverse rate (:meth:`reverse_rates`). ``(B, *D)`` -> ``(B, *D, S)``."""
        scale = per_token(self.schedule.dsigma_bar(as_times(t, x)), x.dim() + 1).to(dtype)
        return scale * self.generator_column(x, dtype=dtype).scatter_(-1, x[..., None], 0.0)

    def log_ratios(self, x_t: Tensor, log_p0: Tensor, t: TimeLike) -> Tensor:
        r"""Probability ratios ("concrete score") from an x_0 distribution, in log space:

        .. math::
            s(x)_y = \sum_{x_0}\hat p(x_0|x)\,\frac{q(y|x_0)}{q(x|x_0)}
            = \frac{\big(w\,\bar Q(t)\big)[y]}{\big(w\,\bar Q(t)\big)[x]},\quad
            w(x_0) = \frac{\hat p(x_0|x)}{q(x|x_0)}

        (Campbell et al. 2022, Prop. 1; with the exact posterior, :math:`q_t(y)/q_t(x)` for a
        change of this token only, the ratio SEDD's network estimates, Lou et al. 2024, Sec. 3).
        :math:`\hat p` is restricted to :math:`\{x_0: q(x|x_0) > 0\}` and renormalized, as in
        :meth:`log_posterior_expected` (dividing by the value at y = x does both), so
        :math:`s(x)_x = 1`. ``(B, *D)``, ``(B, *D, K)`` -> ``(B, *D, S)`` in ``log_p0``'s dtype.
        """
        log_ratio = self.log_propagate(self._likelihood_ratio(x_t, log_p0, t), 0.0, t)
        return log_ratio - log_ratio.gather(-1, x_t[..., None])

    def reverse_rates(self, x_t: Tensor, log_p0: Tensor, t: TimeLike) -> Tensor:
        r"""Reverse-time rates out of :math:`x_t` from an x_0 distribution (Campbell et al. 2022, Prop. 1):

        .. math::
            \hat R(t)[x, y] = R(t)[y, x]\,s(x)_y,\qquad
            s(x)_y = \sum_{x_0}\hat p(x_0|x)\,\frac{q(y|x_0)}{q(x|x_0)}

        for :math:`y \ne x` (:meth:`jump_weights` times :meth:`log_ratios`), and
        :math:`-\sum_{y\ne x}\hat R(t)[x, y]` on the diagonal. With the exact posterior this is the
        time reversal :math:`R(t)[y,x]\,q_t(y)/q_t(x)`; it is also the limit
        :math:`p_\theta(x_{t-h} = y|x_t = x)/h` of the discrete reverse step
        (:meth:`log_posterior_expected`) as :math:`h \to 0`. ``(B, *D)``, ``(B, *D, K)`` ->
        ``(B, *D, S)`` in ``log_p0``'s dtype; O(S) per token.
        """
        times = as_times(t, x_t)
        ratio = torch.exp(self.log_ratios(x_t, log_p0, times))
        off_diagonal = self.jump_weights(x_t, times, dtype=ratio.dtype) * ratio
        return off_diagonal.scatter(-1, x_t[..., None], -off_diagonal.sum(dim=-1, keepdim=True))
