r"""Simulating a factorized CTMC over one step of length h from its per-token jump rates.

Every step takes the off-diagonal rates out of the current state, ``rates[..., y]`` =
:math:`\hat R(x, y)` for :math:`y \ne x` and 0 at :math:`y = x` (``(B, *D, S)``), held fixed over
the step, and the step length ``h`` (per example, ``(B,)``). Randomness comes from the given
``torch.Generator``; categorical draws go through :func:`.sampling.sample_categorical` (float64
Gumbel-max), Poisson counts are drawn in float64.

- :func:`euler_log_probs`: the first-order transition probabilities :math:`\delta_{xy} + h\hat R(x,y)`
  (Campbell et al. 2022, Sec. 4.3; SEDD's Euler predictor, Lou et al. 2024).
- :func:`exponential_log_probs`: at most one jump, taken with the probability of at least one,
  :math:`1 - e^{-h\sum_y\hat R(x,y)}` (discrete flow matching's Euler step).
- :func:`tau_leap`: Poisson jump counts per token (Campbell et al. 2022, Sec. 4.3; Gillespie 2001).
  Ordinal ids: every jump applies, :math:`x + \sum_y (y - x) P_y` clamped to the id range.
  Nominal ids: a jump count :math:`N \sim \mathrm{Poisson}(h\sum_y\hat R(x,y))` and a target
  :math:`y \propto \hat R(x,y)`; :math:`N = 1` moves to the target; :math:`N \ge 2` is either
  rejected (the token stays: Campbell et al.'s rule for categorical data) or resolved by keeping
  one of the N jumps, chosen uniformly (its target has the same law :math:`\propto\hat R(x,\cdot)`,
  so the token moves whenever :math:`N \ge 1`). The per-target counts :math:`P_y` of the paper
  are independent Poissons, so :math:`N = \sum_y P_y` and, given :math:`N = 1`, the target is
  :math:`\propto\hat R(x,y)`: the nominal draw is the paper's in distribution, in O(1) Poisson
  draws per token instead of S.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from .logspace import NEG_INF
from .sampling import sample_categorical
from .transitions import per_token

MultiJump = Literal["reject", "keep_one"]


def poisson(rates: Tensor, *, generator: torch.Generator | None) -> Tensor:
    """Poisson draws with means ``rates`` (any shape), float64, from ``generator`` (on its device)."""
    rates = rates.to(torch.float64)
    if generator is None:
        return torch.poisson(rates)
    return torch.poisson(rates.to(generator.device), generator=generator).to(rates.device)


def euler_log_probs(rates: Tensor, x: Tensor, h: Tensor) -> Tensor:
    r"""One Euler step of the reverse chain: :math:`p(y) = h\hat R(x, y)` for :math:`y \ne x`,
    :math:`p(x) = \max\big(0, 1 - h\sum_{y\ne x}\hat R(x,y)\big)`.

    The clip (a step too long for the rates) leaves the jump probabilities unnormalized; the
    categorical draw normalizes them, i.e. the token jumps for sure.

    Args:
        rates: ``(B, *D, S)`` off-diagonal rates out of ``x``.
        x: ``(B, *D)`` long current states.
        h: ``(B,)`` step lengths.

    Returns:
        ``(B, *D, S)`` unnormalized log-probabilities in ``rates``' dtype.
    """
    probs = per_token(h.to(rates.dtype), rates.dim()) * rates
    stay = (1.0 - probs.sum(dim=-1, keepdim=True)).clamp(min=0.0)
    return probs.scatter_(-1, x[..., None], stay).log_()


def exponential_log_probs(rates: Tensor, x: Tensor, h: Tensor) -> Tensor:
    r"""One step with the rates held fixed and at most one jump: the token leaves with the
    probability of at least one jump, :math:`1 - e^{-h\lambda}`, :math:`\lambda = \sum_{y\ne x}
    \hat R(x,y)`, to :math:`y \propto \hat R(x, y)`; it stays with :math:`e^{-h\lambda}`.

    The Euler step of discrete flow matching (Gat et al. 2024; flow_matching's
    ``MixtureDiscreteEulerSolver``; PITFALLS: "1 - exp(-h sum u), not h sum u"); always a proper
    distribution, so no step is too long. Float64.

    Args:
        rates: ``(B, *D, S)`` off-diagonal rates out of ``x`` (0 at ``x``).
        x: ``(B, *D)`` long current states.
        h: ``(B,)`` step lengths.

    Returns:
        ``(B, *D, S)`` log-probabilities.
    """
    rates = rates.to(torch.float64, copy=True)
    total = rates.sum(dim=-1, keepdim=True)
    jump = -torch.expm1(-per_token(h.to(torch.float64), rates.dim()) * total)
    probs = rates.mul_(jump / total.clamp(min=torch.finfo(torch.float64).tiny))
    return probs.scatter_(-1, x[..., None], 1.0 - jump).log_()


def tau_leap(
    rates: Tensor,
    x: Tensor,
    h: Tensor,
    *,
    generator: torch.Generator | None,
    multi_jump: MultiJump = "reject",
    ordinal: bool = False,
) -> Tensor:
    r"""One tau-leaping step (module docstring): Poisson jump counts per token over length h.

    Args:
        rates: ``(B, *D, S)`` off-diagonal rates out of ``x``.
        x: ``(B, *D)`` long current states.
        h: ``(B,)`` step lengths.
        generator: source of randomness.
        multi_jump: nominal ids with two or more jumps: ``"reject"`` or ``"keep_one"``.
        ordinal: sum the jumps and clamp to ``[0, S - 1]`` instead.

    Returns:
        ``(B, *D)`` long new states.
    """
    means = per_token(h.to(rates.dtype), rates.dim()) * rates
    if ordinal:
        counts = poisson(means, generator=generator)
        offsets = torch.arange(rates.shape[-1], device=x.device) - x[..., None]
        moved = x + (counts * offsets).sum(dim=-1).long()
        return moved.clamp(0, rates.shape[-1] - 1)
    total = means.sum(dim=-1)
    jumps = poisson(total, generator=generator)
    stay = torch.zeros_like(total).masked_fill_(total > 0, NEG_INF)[..., None]  # x: only if no rate > 0
    log_target = means.log_().scatter_(-1, x[..., None], stay)
    target = sample_categorical(log_target, generator=generator)
    move = jumps == 1 if multi_jump == "reject" else jumps >= 1
    return torch.where(move, target, x)
