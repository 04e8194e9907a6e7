r"""Classifier-free guidance for categorical denoisers, in log space (one place for every
token method).

:math:`\log\tilde p \propto \log\hat p_\emptyset + w(\log\hat p_c - \log\hat p_\emptyset)`: Ho &
Salimans 2022 (Eq. 6, with w = 1 + w_HS) applied to log-probabilities; w = 1 is the conditional
model, w = 0 the unconditional one (label ``NULL_LABEL``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..base import NULL_LABEL

Logits = Callable[[Tensor, Tensor, "Tensor | None"], Tensor]


def combine_guidance(log_c: Tensor, log_u: Tensor, guidance_scale: float) -> Tensor:
    """Guided, renormalized log-probabilities from conditional and unconditional ones."""
    return torch.log_softmax(log_u + guidance_scale * (log_c - log_u), dim=-1)


def guided_log_probs(
    logits: Logits, x_t: Tensor, t: Tensor, cond: Tensor | None, guidance_scale: float
) -> Tensor:
    r""":math:`\log\hat p(x_0|x_t)` from ``logits(x_t, t, cond)``, guided when ``guidance_scale``
    != 1 (one batched call on the conditional and null-label copies)."""
    if guidance_scale == 1.0:
        return torch.log_softmax(logits(x_t, t, cond), dim=-1)
    if cond is None:
        raise ValueError("classifier-free guidance (guidance_scale != 1) needs class labels")
    both = torch.cat([cond, torch.full_like(cond, NULL_LABEL)])
    log_c, log_u = torch.log_softmax(logits(torch.cat([x_t, x_t]), torch.cat([t, t]), both), dim=-1).chunk(2)
    return combine_guidance(log_c, log_u, guidance_scale)


def network_calls(guidance_scale: float) -> int:
    """Network evaluations per denoising call: a guided one counts as two."""
    return 1 if guidance_scale == 1.0 else 2
