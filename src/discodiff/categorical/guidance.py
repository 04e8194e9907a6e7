r"""Classifier-free guidance for categorical denoisers, in log space (every token method).

:math:`\log\tilde p \propto \log\hat p_\emptyset + w(\log\hat p_c - \log\hat p_\emptyset)`:
:func:`discodiff.guidance.guide` (Ho & Salimans 2022, Eq. 6, with w = 1 + w_HS) applied to
log-probabilities and renormalized; w = 1 is the conditional model, w = 0 the unconditional one.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..guidance import guide, guided_call

Logits = Callable[[Tensor, Tensor, "Tensor | None"], Tensor]


def combine_guidance(log_c: Tensor, log_u: Tensor, guidance_scale: float) -> Tensor:
    """Guided, renormalized log-probabilities from conditional and unconditional ones."""
    return torch.log_softmax(guide(log_c, log_u, guidance_scale), dim=-1)


def guided_log_probs(
    logits: Logits, x_t: Tensor, t: Tensor, cond: Tensor | None, guidance_scale: float
) -> Tensor:
    r""":math:`\log\hat p(x_0|x_t)` from ``logits(x_t, t, cond)``, guided (and renormalized) when
    ``guidance_scale`` != 1 (one batched call on the conditional and null-label copies)."""
    if guidance_scale == 1.0:
        return torch.log_softmax(logits(x_t, t, cond), dim=-1)

    def log_probs(x: Tensor, s: Tensor, c: Tensor | None) -> Tensor:
        return torch.log_softmax(logits(x, s, c), dim=-1)

    return torch.log_softmax(guided_call(log_probs, x_t, t, cond, guidance_scale), dim=-1)


def network_calls(guidance_scale: float) -> int:
    """Network evaluations per denoising call: a guided one counts as two."""
    return 1 if guidance_scale == 1.0 else 2
