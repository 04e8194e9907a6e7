r"""Transitions stored as dense S x S matrices in float64: discretized Gaussian, user step matrices,
and exponentiated rate matrices.

For small state spaces only (ordinal pixel levels, small alphabets): the kernel for each example
is an S x S float64 matrix, and grid transitions keep :math:`2(T+1)S^2` float64 numbers. Products
of many near-identity matrices drift in float32, so they are formed in float64 (D3PM's code does
the same; PITFALLS, "Precompute cumulative products in float64"). Row convention as in
:mod:`.transitions`.
"""

from __future__ import annotations

from abc import abstractmethod

import torch
from torch import Tensor

from ..errors import ConfigError
from ..schedules import Schedule
from .logspace import log_matmul
from .sampling import sample_inverse_cdf
from .transitions import ContinuousTimeTransition, TimeLike, Transition, as_times, per_token

GRID_TOLERANCE = 1e-3
"""How far (in units of one step, 1/T) a time may be from the grid ``i / T`` and still name step i."""

STOCHASTIC_TOLERANCE = 1e-6
"""Largest allowed deviation of a user matrix's row sums from 1 (step matrices) or 0 (rate matrices)."""


class MatrixTransition(Transition):
    """A transition whose kernels :math:`Q(s,t)` are computed as dense float64 matrices."""

    @abstractmethod
    def kernel_matrices(self, s: Tensor, t: Tensor) -> Tensor:
        r""":math:`Q(s,t)` per example: ``(B,)`` float64 times -> ``(B, S, S)`` float64."""

    def _kernels(self, x: Tensor, s: TimeLike, t: TimeLike) -> Tensor:
        return self.kernel_matrices(as_times(s, x), as_times(t, x))

    def _gather_rows(self, matrices: Tensor, x: Tensor) -> Tensor:
        """``matrices[b, x[b, ...], :]``: ``(B, S, S)``, ``(B, *D)`` -> ``(B, *D, S)``."""
        flat = x.reshape(x.shape[0], -1)
        rows = matrices[torch.arange(x.shape[0], device=x.device)[:, None], flat]
        return rows.reshape(*x.shape, self.num_states)

    def log_transition(self, x_s: Tensor, s: TimeLike, t: TimeLike, *, dtype: torch.dtype) -> Tensor:
        return torch.log(self._gather_rows(self._kernels(x_s, s, t), x_s)).to(dtype)

    def log_likelihood(self, x_t: Tensor, s: TimeLike, t: TimeLike, *, dtype: torch.dtype) -> Tensor:
        columns = self._gather_rows(self._kernels(x_t, s, t).transpose(1, 2), x_t)
        return torch.log(columns).to(dtype)

    def log_propagate(self, log_p: Tensor, s: TimeLike, t: TimeLike) -> Tensor:
        log_p = self._pad_states(log_p)
        flat = log_p.reshape(log_p.shape[0], -1, self.num_states)
        out = log_matmul(flat, self._kernels(log_p, s, t))
        return out.reshape(log_p.shape).to(log_p.dtype)

    def sample_transition(self, x_s: Tensor, s: TimeLike, t: TimeLike, u: Tensor) -> Tensor:
        rows = self._gather_rows(self._kernels(x_s, s, t), x_s)
        return sample_inverse_cdf(torch.log(rows), u[..., 0])


class GridTransition(MatrixTransition):
    r"""A T-step chain given by its step matrices :math:`Q_i = Q(t_{i-1}, t_i)`, :math:`t_i = i/T`.

    Kernels exist between grid times only: :math:`Q(t_j, t_k) = Q_{j+1}\cdots Q_k`; the cumulative
    products :math:`\bar Q_k = Q(0, t_k)` are precomputed in float64, other spans are multiplied
    out on demand (T matrix products at most).

    Args:
        steps: ``(T, S, S)`` row-stochastic step matrices.
        vocab_size: number of data ids (the first ``vocab_size`` states; default all S).
    """

    def __init__(self, steps: Tensor, vocab_size: int | None = None) -> None:
        steps = torch.as_tensor(steps, dtype=torch.float64)
        if steps.dim() != 3 or steps.shape[1] != steps.shape[2]:
            raise ConfigError(f"step matrices must have shape (T, S, S), got {tuple(steps.shape)}")
        _check_stochastic(steps, "step matrices")
        num_states = steps.shape[1]
        super().__init__(num_states if vocab_size is None else vocab_size, num_states)
        self.timesteps = steps.shape[0]
        eye = torch.eye(num_states, dtype=torch.float64)
        cumulative = [eye]
        for q in steps:
            cumulative.append(cumulative[-1] @ q)
        self.register_buffer("_steps", torch.cat([eye[None], steps]), persistent=False)
        self.register_buffer("_cumulative", torch.stack(cumulative), persistent=False)
        self.register_buffer("_log_pi", torch.log(stationary_distribution(cumulative[-1])), persistent=False)

    def grid_index(self, t: Tensor) -> Tensor:
        """``(B,)`` float64 grid times ``i / T`` -> long step indices ``i``."""
        scaled = t * self.timesteps
        idx = scaled.round()
        if ((scaled - idx).abs() > GRID_TOLERANCE).any() or (idx < 0).any() or (idx > self.timesteps).any():
            raise ValueError(
                f"{type(self).__name__} is defined on the grid i/{self.timesteps} only; got times "
                f"{t.tolist()}"
            )
        return idx.long()

    def span(self, j: int, k: int) -> Tensor:
        r""":math:`Q(t_j, t_k) = Q_{j+1}\cdots Q_k`, ``(S, S)`` float64."""
        if j > k:
            raise ValueError(f"kernel from step {j} to an earlier step {k}")
        if j == 0:
            return self._cumulative[k]
        out = self._steps[0]
        for i in range(j + 1, k + 1):
            out = out @ self._steps[i]
        return out

    def kernel_matrices(self, s: Tensor, t: Tensor) -> Tensor:
        keys = self.grid_index(s) * (self.timesteps + 1) + self.grid_index(t)
        unique, inverse = torch.unique(keys, return_inverse=True)
        mats = torch.stack([self.span(*divmod(key, self.timesteps + 1)) for key in unique.tolist()])
        return mats[inverse]

    def log_stationary(self) -> Tensor:
        r"""The stationary distribution of the whole chain :math:`\bar Q_T` (:math:`\pi\bar Q_T = \pi`)."""
        return self._log_pi


class DiscretizedGaussianTransition(GridTransition):
    r"""Ordinal data: jumps to nearby values, Gaussian in the distance (Austin et al. 2021, App. A.2.2).

    .. math::
        [Q_i]_{jk} = \frac{\exp\big(-\frac{4(j-k)^2}{(K-1)^2\beta_i}\big)}
        {\sum_{n=-(K-1)}^{K-1}\exp\big(-\frac{4n^2}{(K-1)^2\beta_i}\big)}\ (j \ne k),\qquad
        [Q_i]_{jj} = 1 - \sum_{k\ne j}[Q_i]_{jk},

    with :math:`\beta_i` the schedule's per-step betas on the T-step grid. Each :math:`Q_i` is
    symmetric, hence doubly stochastic: the stationary distribution is uniform. (D3PM's code
    spaces the offsets by K/(K-1) instead of 1, a small deviation from the paper's formula; this
    follows the paper.) The betas come from the schedule. The chain reaches its uniform stationary
    distribution only after many steps with :math:`\beta_i` near 1 (the paper uses betas linear
    from 0.02 to 1 over 1000 steps): a cosine schedule, whose betas approach 1 only in the last
    few steps, leaves :math:`q(x_1|x_0)` far from uniform and a large prior term; a ``geometric``
    or ``linear`` schedule with a large maximum noise does not.
    """

    def __init__(self, schedule: Schedule, vocab_size: int, timesteps: int) -> None:
        betas = schedule.betas(timesteps)
        super().__init__(torch.stack([gaussian_step_matrix(float(b), vocab_size) for b in betas]))


def gaussian_step_matrix(beta: float, num_states: int) -> Tensor:
    """One discretized-Gaussian step matrix ``(K, K)`` float64 (formula in the class docstring)."""
    idx = torch.arange(num_states, dtype=torch.float64)
    if beta <= 0:
        return torch.eye(num_states, dtype=torch.float64)
    offsets = torch.arange(-(num_states - 1), num_states, dtype=torch.float64)
    log_w = -4 * offsets**2 / ((num_states - 1) ** 2 * beta)
    log_norm = torch.logsumexp(log_w, dim=0)
    dist = (idx[:, None] - idx[None, :]) ** 2
    off = torch.exp(-4 * dist / ((num_states - 1) ** 2 * beta) - log_norm)
    off.fill_diagonal_(0.0)
    return off + torch.diag(1 - off.sum(dim=1))


class DenseTransition(GridTransition):
    """User step matrices on the T-step grid: one ``(S, S)`` matrix for every step, or ``(T, S, S)``.

    Args:
        matrices: ``(S, S)`` (used at every step; needs ``timesteps``) or ``(T, S, S)``.
        timesteps: T, when one matrix is given.
        vocab_size: number of data ids (the first states; default all).
    """

    def __init__(
        self, matrices: Tensor, *, timesteps: int | None = None, vocab_size: int | None = None
    ) -> None:
        matrices = torch.as_tensor(matrices, dtype=torch.float64)
        if matrices.dim() == 2:
            if timesteps is None or timesteps < 1:
                raise ConfigError("one step matrix needs timesteps >= 1 to say how often it applies")
            matrices = matrices.expand(timesteps, *matrices.shape)
        elif timesteps is not None and timesteps != matrices.shape[0]:
            raise ConfigError(f"{matrices.shape[0]} step matrices given for timesteps={timesteps}")
        super().__init__(matrices, vocab_size)


class RateMatrixTransition(ContinuousTimeTransition, MatrixTransition):
    r"""A CTMC with a user generator G: :math:`Q(s,t) = \exp\big((\bar\sigma(t)-\bar\sigma(s))G\big)`.

    Computed with ``torch.linalg.matrix_exp`` in float64 at any pair of times (Campbell et al.
    2022, Sec. 3). Where :math:`\bar\sigma(t) = \infty` the kernel is its limit
    :math:`\mathbf 1\pi^\top` (exact for an irreducible chain).

    Args:
        rate: ``(S, S)`` generator: off-diagonal entries >= 0, rows summing to 0.
        schedule: the total noise :math:`\bar\sigma(t)`.
        vocab_size: number of data ids (the first states; default all).
    """

    def __init__(self, rate: Tensor, schedule: Schedule, *, vocab_size: int | None = None) -> None:
        rate = torch.as_tensor(rate, dtype=torch.float64)
        if rate.dim() != 2 or rate.shape[0] != rate.shape[1]:
            raise ConfigError(f"rate matrix must be square (S, S), got {tuple(rate.shape)}")
        off = rate - torch.diag(torch.diagonal(rate))
        if (off < 0).any() or (rate.sum(dim=1).abs() > STOCHASTIC_TOLERANCE * rate.abs().max()).any():
            raise ConfigError("rate matrix needs off-diagonal entries >= 0 and rows summing to 0")
        num_states = rate.shape[0]
        super().__init__(num_states if vocab_size is None else vocab_size, num_states)
        self.schedule = schedule
        self.register_buffer("_rate", rate, persistent=False)
        limit = torch.eye(num_states, dtype=torch.float64) + rate  # same stationary distribution
        self.register_buffer("_log_pi", torch.log(stationary_distribution(limit)), persistent=False)

    def kernel_matrices(self, s: Tensor, t: Tensor) -> Tensor:
        delta = self.schedule.sigma_bar(t) - self.schedule.sigma_bar(s)
        unique, inverse = torch.unique(delta, return_inverse=True)
        finite = torch.where(torch.isfinite(unique), unique, 0.0)
        mats = torch.linalg.matrix_exp(per_token(finite, 3) * self._rate)
        limit = self._log_pi.exp().expand(self.num_states, -1)
        mats = torch.where(per_token(torch.isfinite(unique), 3), mats, limit)
        return mats[inverse]

    def log_stationary(self) -> Tensor:
        return self._log_pi

    def generator_row(self, x: Tensor, *, dtype: torch.dtype) -> Tensor:
        return self._rate[x].to(dtype)

    def generator_column(self, x: Tensor, *, dtype: torch.dtype) -> Tensor:
        return self._rate.T[x].to(dtype)


def stationary_distribution(matrix: Tensor) -> Tensor:
    r"""A :math:`\pi \ge 0` with :math:`\pi M = \pi`, :math:`\sum\pi = 1`, for a row-stochastic M (float64).

    Least squares on :math:`[(M - I)^\top; \mathbf 1^\top]\,\pi = [0; 1]`.
    """
    n = matrix.shape[0]
    a = torch.cat([(matrix - torch.eye(n, dtype=matrix.dtype)).T, torch.ones(1, n, dtype=matrix.dtype)])
    b = torch.zeros(n + 1, 1, dtype=matrix.dtype)
    b[-1] = 1.0
    pi = torch.linalg.lstsq(a, b).solution[:, 0].clamp(min=0)
    return pi / pi.sum()


def _check_stochastic(matrices: Tensor, what: str) -> None:
    if not torch.isfinite(matrices).all() or (matrices < 0).any():
        raise ConfigError(f"{what} must be finite and non-negative")
    if ((matrices.sum(dim=-1) - 1).abs() > STOCHASTIC_TOLERANCE).any():
        raise ConfigError(f"{what} must be row-stochastic (each row sums to 1; row convention)")
