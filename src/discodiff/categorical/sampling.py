r"""The categorical samplers every discrete method uses.

- :func:`sample_categorical`: reverse-process draws with an explicit ``torch.Generator``, by
  Gumbel-max in float64: :math:`\arg\max_j(\log p_j + g_j)`, :math:`g_j = -\log(-\log u_j)`,
  :math:`u_j \sim U[0, 1)`. Float32 Gumbel noise measurably lowers sample entropy (flow_matching
  issue #27, DUO issue #16), so the noise and the sum are float64.
- :func:`sample_inverse_cdf`: forward-process draws from uniforms the caller supplies (training
  randomness comes from ``Batch.rand``), one uniform per draw, by inverse CDF in float64.
- :func:`sharpen`: temperature and nucleus (top-p) filtering of a distribution.
- :func:`uniform`: uniforms from a generator, the analogue of :func:`discodiff.utils.randn`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .logspace import NEG_INF, log_normalize


def uniform(shape: tuple[int, ...], *, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """Float64 uniforms in [0, 1) from ``generator`` (drawn on its device), moved to ``device``."""
    if generator is None:
        return torch.rand(shape, device=device, dtype=torch.float64)
    return torch.rand(shape, generator=generator, device=generator.device, dtype=torch.float64).to(device)


def sample_categorical(
    log_probs: Tensor, *, generator: torch.Generator | None = None, check: bool = True
) -> Tensor:
    r"""One draw per row of :math:`\mathrm{Cat}(p)` by Gumbel-max in float64.

    :math:`x = \arg\max_j(\log p_j + g_j)` with :math:`g_j = -\log(-\log u_j)` (Gumbel 1954;
    Maddison et al. 2014); ``log_probs`` need not be normalized. :math:`u = 0` gives
    :math:`g = -\infty`, so no NaN arises and zero-probability entries are never drawn. Peak extra
    memory: one float64 tensor the size of ``log_probs``.

    Args:
        log_probs: ``(..., S)`` (unnormalized) log-probabilities, any float dtype.
        generator: source of randomness (``None``: torch's global generator).
        check: refuse rows without positive probability or with NaN / +inf (two host
            synchronizations); a caller that checks its inputs itself (once per sampling call, as
            the autoregressive decoder does) passes ``False``.

    Returns:
        ``(...)`` long draws in ``[0, S)``.

    Raises:
        ValueError: a row has no positive probability, or contains NaN / +inf.
    """
    if check:
        _check_rows(log_probs)
    noise = uniform(tuple(log_probs.shape), generator=generator, device=log_probs.device)
    noise.log_().neg_().log_().neg_()  # Gumbel(0, 1), in place
    noise.add_(log_probs)
    return noise.argmax(dim=-1)


def sample_inverse_cdf(log_probs: Tensor, u: Tensor) -> Tensor:
    r"""One draw per row by inverse CDF: the smallest j with :math:`F_j > u\,F_{S-1}`.

    :math:`F_j = \sum_{k \le j} p_k` in float64; entries with :math:`p_j = 0` are never drawn
    (their CDF step is empty). ``log_probs`` broadcasts against ``u``'s shape, so a shared
    distribution ``(S,)`` costs O(S) memory, not O(N S).

    Args:
        log_probs: ``(..., S)`` (unnormalized) log-probabilities, broadcastable to ``u.shape + (S,)``.
        u: ``(...)`` float64 uniforms in [0, 1).

    Returns:
        ``u.shape`` long draws in ``[0, S)``.
    """
    log_probs = log_probs.to(torch.float64)
    u = u.to(torch.float64)
    cdf = torch.cumsum(torch.exp(log_probs - log_probs.amax(dim=-1, keepdim=True)), dim=-1)
    last = cdf.shape[-1] - 1
    if cdf.dim() == 1:  # one shared distribution
        return torch.searchsorted(cdf, u * cdf[-1], right=True).clamp(max=last)
    cdf = cdf.expand(u.shape + cdf.shape[-1:]).contiguous()
    target = (u * cdf[..., -1])[..., None]
    return torch.searchsorted(cdf, target, right=True).squeeze(-1).clamp(max=last)


def sharpen(log_probs: Tensor, *, temperature: float = 1.0, top_p: float = 1.0) -> Tensor:
    r"""Temperature and nucleus filtering: :math:`p_j \propto p_j^{1/\tau}`, then keep the smallest
    set of most likely entries with total mass :math:`\ge` ``top_p`` (Holtzman et al. 2020).

    ``temperature = 1`` and ``top_p = 1`` return ``log_probs`` unchanged; ``temperature = 0``
    keeps only the most likely entry (argmax decoding). Top-p sorts each row: memory of a sorted
    copy plus its long indices.

    Args:
        log_probs: ``(..., S)`` normalized log-probabilities.
        temperature: :math:`\tau \ge 0`.
        top_p: nucleus mass in (0, 1].

    Returns:
        ``(..., S)`` normalized log-probabilities.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if temperature == 0:
        keep = log_probs.argmax(dim=-1, keepdim=True)
        return torch.full_like(log_probs, NEG_INF).scatter_(-1, keep, 0.0)
    if temperature != 1:
        log_probs = log_normalize(log_probs / temperature)
    if top_p < 1:
        sorted_lp, order = torch.sort(log_probs, dim=-1, descending=True)
        mass_before = torch.cumsum(sorted_lp.exp(), dim=-1) - sorted_lp.exp()
        drop_sorted = mass_before >= top_p  # the most likely entry always has mass_before = 0
        drop = torch.zeros_like(drop_sorted).scatter_(-1, order, drop_sorted)
        log_probs = log_normalize(log_probs.masked_fill(drop, NEG_INF))
    return log_probs


def _check_rows(log_probs: Tensor) -> None:
    """Refuse rows with NaN or +inf, or without any positive probability."""
    top = log_probs.amax(dim=-1)
    if not bool((top < float("inf")).all()):
        raise ValueError("categorical log-probabilities contain NaN or +inf")
    if bool((top == NEG_INF).any()):
        raise ValueError("a categorical distribution has no positive probability (all entries -inf)")
