r"""Drawing categorical variables: the one helper every discrete sampler goes through.

Draws use the Gumbel-max trick in float64: :math:`\arg\max_k (\ell_k + g_k)` with
:math:`g_k = -\log(-\log u_k)`, :math:`u_k \sim U[0, 1)` is an exact sample of
:math:`\mathrm{softmax}(\ell)` (Gumbel 1954; Maddison et al. 2014). Float32 noise and
probabilities measurably lower sample entropy (flow_matching issue #27), hence float64.
"""

from __future__ import annotations

import torch
from torch import Tensor


def top_p_filter(log_probs: Tensor, top_p: float) -> Tensor:
    r"""Nucleus filtering (Holtzman et al. 2020, Sec. 3.1): keep the smallest set of categories whose
    probabilities sum to at least ``top_p`` (always the most likely one), set the rest to -inf.

    Args:
        log_probs: ``(..., K)`` normalized log-probabilities.
        top_p: in (0, 1]; 1 keeps everything.

    Returns:
        ``(..., K)`` the same log-probabilities with the tail at -inf (not renormalized).
    """
    if top_p >= 1.0:
        return log_probs
    sorted_lp, order = torch.sort(log_probs, dim=-1, descending=True)
    mass_before = torch.cumsum(sorted_lp.exp(), dim=-1) - sorted_lp.exp()  # mass of the more likely ones
    drop_sorted = mass_before >= top_p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return log_probs.masked_fill(drop, -torch.inf)


def sample_categorical(
    logits: Tensor,
    *,
    generator: torch.Generator | None = None,
    temperature: float = 1.0,
    top_p: float = 1.0,
) -> Tensor:
    r"""One draw per row from :math:`\mathrm{softmax}(\ell / \tau)`, restricted to the top-p nucleus.

    Args:
        logits: ``(..., K)`` unnormalized log-probabilities, any float dtype; -inf excludes a
            category.
        generator: the random generator (its device may differ from the logits').
        temperature: :math:`\tau > 0`.
        top_p: nucleus mass in (0, 1]; 1 samples from the full distribution.

    Returns:
        ``(...)`` long category ids.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if torch.isnan(logits).any():
        raise ValueError("categorical logits contain NaN")
    log_probs = torch.log_softmax(logits.double() / temperature, dim=-1)
    log_probs = top_p_filter(log_probs, top_p)
    return torch.argmax(log_probs + gumbel_noise(log_probs.shape, generator, log_probs.device), dim=-1)


def gumbel_noise(
    shape: torch.Size | tuple[int, ...], generator: torch.Generator | None, device: torch.device
) -> Tensor:
    r"""Standard Gumbel noise :math:`-\log(-\log u)`, float64 (-inf where :math:`u = 0`)."""
    where = device if generator is None else generator.device
    u = torch.rand(shape, generator=generator, device=where, dtype=torch.float64).to(device)
    return -torch.log(-torch.log(u))
