r"""The mixing family: keep the state or resample it from a fixed distribution :math:`\pi`.

.. math::
    Q(s,t) = r\,I + (1-r)\,\mathbf 1\pi^\top,\qquad r = \frac{\bar\alpha(t)}{\bar\alpha(s)}
    = e^{-(\bar\sigma(t)-\bar\sigma(s))},

so :math:`q(x_t|x_0) = \bar\alpha_t\,\delta_{x_0} + (1-\bar\alpha_t)\,\pi` with
:math:`\bar\alpha_t = \bar\alpha(t)/\bar\alpha(0)` (Austin et al. 2021, Sec. 3.2 and App. A.2;
Hoogeboom et al. 2021, Sec. 4, for uniform; Vignac et al. 2023, Sec. 4.1 for the marginal). These
compose exactly (:math:`r` multiplies), so one formula serves every pair of times, and a T-step
chain with :math:`\beta_i = 1 - \bar\alpha(t_i)/\bar\alpha(t_{i-1})` is D3PM's
:math:`Q_i = (1-\beta_i)I + \beta_i\mathbf 1\pi^\top`.

As a CTMC the generator is :math:`G = \mathbf 1\pi^\top - I` (rate :math:`\pi_j` from any state to
j): since :math:`G^2 = -G`, :math:`\exp(\Delta G) = e^{-\Delta}I + (1-e^{-\Delta})\mathbf 1\pi^\top`
with :math:`\Delta = \bar\sigma(t) - \bar\sigma(s)`, the formula above. SEDD's uniform graph
:math:`\mathbf 1\mathbf 1^\top - K I` is :math:`K G` (its noise levels are ours divided by K);
its absorbing graph equals G with :math:`\pi = e_{\mathrm{mask}}` (Lou et al. 2024, Sec. 3.3).

Every method is O(S) per token: a row or column of :math:`Q` is a constant vector plus one spike;
no S x S matrix is ever built.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..schedules import Schedule
from ..utils import log1mexp
from .logspace import NEG_INF, log_add_exp
from .sampling import sample_inverse_cdf
from .transitions import ContinuousTimeTransition, TimeLike, as_times, per_token


class MixingTransition(ContinuousTimeTransition):
    r""":math:`Q(s,t) = r I + (1-r)\mathbf 1\pi^\top` with :math:`\pi` = ``log_pi`` (see module docstring).

    Args:
        schedule: gives :math:`\bar\sigma(t)`; the keep probability from s to t is
            :math:`e^{-(\bar\sigma(t)-\bar\sigma(s))}`.
        vocab_size: K, the number of data ids (the first K states).
        log_pi: ``(S,)`` log-probabilities of the resampling distribution (normalized).
    """

    def __init__(self, schedule: Schedule, vocab_size: int, log_pi: Tensor) -> None:
        super().__init__(vocab_size, log_pi.numel())
        self.schedule = schedule
        self.register_buffer("_log_pi", log_pi.to(torch.float64), persistent=False)

    def log_keep_move(self, s: TimeLike, t: TimeLike, x: Tensor) -> tuple[Tensor, Tensor]:
        r""":math:`(\log r, \log(1-r))`, ``(B,)`` float64, for the batch of ``x`` ``(B, ...)``."""
        s, t = as_times(s, x), as_times(t, x)
        delta = self.schedule.sigma_bar(t) - self.schedule.sigma_bar(s)
        return -delta, log1mexp(-delta)

    def log_transition(self, x_s: Tensor, s: TimeLike, t: TimeLike, *, dtype: torch.dtype) -> Tensor:
        r"""Row: :math:`\log((1-r)\pi_j)` everywhere, :math:`\log(r + (1-r)\pi_{x_s})` at :math:`j = x_s`."""
        log_keep, log_move = (per_token(c, x_s.dim()) for c in self.log_keep_move(s, t, x_s))
        spike = torch.logaddexp(log_keep, log_move + self._log_pi[x_s])
        out = (log_move[..., None] + self._log_pi).to(dtype).expand(*x_s.shape, self.num_states).contiguous()
        return out.scatter_(-1, x_s[..., None], spike[..., None].to(dtype))

    def log_likelihood(self, x_t: Tensor, s: TimeLike, t: TimeLike, *, dtype: torch.dtype) -> Tensor:
        r"""Column: :math:`\log((1-r)\pi_{x_t})` from each source, plus :math:`r` from :math:`x_t` itself."""
        log_keep, log_move = (per_token(c, x_t.dim()) for c in self.log_keep_move(s, t, x_t))
        base = log_move + self._log_pi[x_t]
        spike = torch.logaddexp(log_keep, base)
        out = base[..., None].to(dtype).expand(*x_t.shape, self.num_states).contiguous()
        return out.scatter_(-1, x_t[..., None], spike[..., None].to(dtype))

    def log_propagate(self, log_p: Tensor, s: TimeLike, t: TimeLike) -> Tensor:
        r""":math:`\log(p\,Q) = \log\big(r\,p_j + (1-r)\,\pi_j\textstyle\sum_k p_k\big)`."""
        log_p = self._pad_states(log_p)
        log_keep, log_move = (
            per_token(c, log_p.dim()).to(log_p.dtype) for c in self.log_keep_move(s, t, log_p)
        )
        total = torch.logsumexp(log_p, dim=-1, keepdim=True)
        return log_add_exp(log_keep + log_p, log_move + total + self._log_pi.to(log_p.dtype))

    def sample_transition(self, x_s: Tensor, s: TimeLike, t: TimeLike, u: Tensor) -> Tensor:
        r"""Keep :math:`x_s` if :math:`u_0 < r`, else draw from :math:`\pi` with :math:`u_1`."""
        log_keep, _ = self.log_keep_move(s, t, x_s)
        keep = u[..., 0] < per_token(log_keep.exp(), x_s.dim())
        return torch.where(keep, x_s, sample_inverse_cdf(self._log_pi, u[..., 1]))

    def log_stationary(self) -> Tensor:
        return self._log_pi

    def generator_row(self, x: Tensor, *, dtype: torch.dtype) -> Tensor:
        r""":math:`G[x, j] = \pi_j - \delta_{xj}`."""
        out = self._log_pi.exp().to(dtype).expand(*x.shape, self.num_states).contiguous()
        return out.scatter_add_(-1, x[..., None], torch.full_like(x[..., None], -1, dtype=dtype))

    def generator_column(self, x: Tensor, *, dtype: torch.dtype) -> Tensor:
        r""":math:`G[i, x] = \pi_x - \delta_{ix}`."""
        out = self._log_pi.exp()[x][..., None].to(dtype).expand(*x.shape, self.num_states).contiguous()
        return out.scatter_add_(-1, x[..., None], torch.full_like(x[..., None], -1, dtype=dtype))


class UniformTransition(MixingTransition):
    r"""Resample uniformly: :math:`\pi = \mathbf 1/K` (Hoogeboom et al. 2021; D3PM App. A.2.1)."""

    def __init__(self, schedule: Schedule, vocab_size: int) -> None:
        super().__init__(
            schedule, vocab_size, torch.full((vocab_size,), -math.log(vocab_size), dtype=torch.float64)
        )


class AbsorbingTransition(MixingTransition):
    r"""Jump to [MASK] and stay: :math:`\pi = e_{\mathrm{mask}}`, mask id = K, S = K + 1.

    (Austin et al. 2021, Sec. 3.2 / App. A.2.3; the masked diffusion of Sahoo et al. 2024 and
    Shi et al. 2024 in continuous time.) :math:`q(x_t|x_0) = \bar\alpha_t\delta_{x_0} +
    (1-\bar\alpha_t)\delta_{\mathrm{mask}}`.
    """

    def __init__(self, schedule: Schedule, vocab_size: int) -> None:
        log_pi = torch.full((vocab_size + 1,), NEG_INF, dtype=torch.float64)
        log_pi[vocab_size] = 0.0
        super().__init__(schedule, vocab_size, log_pi)

    @property
    def mask_id(self) -> int:
        """The [MASK] state id, K."""
        return self.vocab_size


class MarginalTransition(MixingTransition):
    r"""Resample from the data's token marginal m: :math:`\pi = m` (Vignac et al. 2023, Sec. 4.1).

    Args:
        schedule: the noise schedule.
        marginal: ``(K,)`` non-negative token frequencies (normalized here).
    """

    def __init__(self, schedule: Schedule, marginal: Tensor) -> None:
        marginal = torch.as_tensor(marginal, dtype=torch.float64)
        if marginal.dim() != 1 or not torch.isfinite(marginal).all() or (marginal < 0).any():
            raise ValueError("marginal must be a 1-d tensor of finite, non-negative frequencies")
        if marginal.sum() <= 0:
            raise ValueError("marginal must have positive total mass")
        super().__init__(schedule, marginal.numel(), torch.log(marginal / marginal.sum()))
