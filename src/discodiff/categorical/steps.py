r"""One step of the CTMC samplers of :mod:`.continuous_time`, from t to s < t.

Uniform and absorbing transitions take the closed-form steps of :mod:`.closed_steps` (a token's
move and its target drawn apart, no ``(B, *D, S)`` rates); every other transition, ordinal
tau-leaping and the predictor-corrector's corrector use the dense rates (:mod:`.jumps`,
:func:`.ratios.tweedie_log_probs`). The last step (s = 0) is always analytic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .closed_steps import jump_step
from .jumps import euler_log_probs, tau_leap
from .sampling import sample_categorical

if TYPE_CHECKING:
    from .continuous_time import ContinuousTimeMethod


LAST_TIME = 1.0 - torch.finfo(torch.float64).eps / 2
"""The largest float64 below 1: random times stay below t = 1, where a schedule with
:math:`\\bar\\alpha(1) = 0` has an infinite rate :math:`\\bar\\sigma'(1)`."""


def pin(x: Tensor, pinned: tuple[Tensor, Tensor] | None) -> Tensor:
    """Known positions get their known value; the rest of ``x`` is unchanged."""
    if pinned is None:
        return x
    values, mask = pinned
    return torch.where(mask, values, x)


def ctmc_step(
    method: ContinuousTimeMethod,
    x: Tensor,
    s: Tensor,
    t: Tensor,
    cond: Tensor | None,
    guidance_scale: float,
    sampler: str,
    generator: torch.Generator | None,
    pinned: tuple[Tensor, Tensor] | None,
) -> Tensor:
    """One step of ``sampler`` from t to s (module docstring), then re-pin the known tokens."""
    o = method.options
    t = t.clamp(max=LAST_TIME)  # rates at t = 1 are limits (0 * inf when alpha_bar(1) = 0)
    predictor = "analytic" if sampler == "analytic" or bool((s == 0).all()) else sampler
    predictor = "tau_leaping" if predictor == "pc" else predictor
    if method.closed is not None and not (o.ordinal and predictor == "tau_leaping"):
        rows = method.ratio_rows(x, t, cond, guidance_scale=guidance_scale)
        x = jump_step(
            method.closed, rows, x, s, t, sampler=predictor, multi_jump=o.multi_jump, generator=generator
        )
        x = pin(x, pinned)
    elif predictor == "analytic":
        log_probs = method.analytic_log_probs(x, s, t, cond, guidance_scale=guidance_scale)
        return pin(sample_categorical(log_probs, generator=generator), pinned)
    else:
        rates = method.reverse_rates(x, t, cond, guidance_scale=guidance_scale)
        if predictor == "euler":
            return pin(sample_categorical(euler_log_probs(rates, x, t - s), generator=generator), pinned)
        x = pin(
            tau_leap(rates, x, t - s, generator=generator, multi_jump=o.multi_jump, ordinal=o.ordinal), pinned
        )
    if sampler != "pc" or predictor == "analytic" or float(s[0]) > o.corrector_entry_time:
        return x
    for _ in range(o.corrector_steps):
        rates = method.reverse_rates(x, s, cond, guidance_scale=guidance_scale)
        rates += method.transition.rate_row(x, s, dtype=rates.dtype).scatter_(-1, x[..., None], 0.0)
        h = o.corrector_step_size * (t - s)
        x = pin(
            tau_leap(rates, x, h, generator=generator, multi_jump=o.multi_jump, ordinal=o.ordinal), pinned
        )
    return x
