r"""Classifier-free guidance: the one formula every method uses (Ho & Salimans 2022, Eq. 6).

With scale :math:`w = 1 + w_{HS}`, a guided output is
:math:`\tilde f = f_\emptyset + w\,(f_c - f_\emptyset)`: w = 1 is the conditional model, w = 0 the
unconditional one (label :data:`~discodiff.base.NULL_LABEL`), w > 1 sharpens towards the class.
What f is depends on the method: :math:`\hat\epsilon` and :math:`\hat x_0` for Gaussian diffusion
(any prediction: the conversions are affine at fixed :math:`x_t`), log-probabilities for token
models (renormalized after, :func:`discodiff.categorical.guidance.combine_guidance`), log-ratios
for score-entropy models. Both halves come from one batched call on ``[x; x]`` with labels
``[c; null]`` (:func:`with_null_labels`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .base import NULL_LABEL


def guide(out_c: Tensor, out_u: Tensor, guidance_scale: float) -> Tensor:
    r""":math:`f_\emptyset + w\,(f_c - f_\emptyset)` of a conditional and an unconditional output."""
    return out_u + guidance_scale * (out_c - out_u)


def with_null_labels(cond: Tensor | None) -> Tensor:
    """Labels ``[cond; null]`` for the batched guided call (``2B`` rows)."""
    if cond is None:
        raise ValueError("classifier-free guidance (guidance_scale != 1) needs class labels")
    return torch.cat([cond, torch.full_like(cond, NULL_LABEL)])


def guided_call(
    fn: Callable[[Tensor, Tensor, Tensor | None], Tensor],
    x_t: Tensor,
    t: Tensor,
    cond: Tensor | None,
    guidance_scale: float,
) -> Tensor:
    """``fn(x_t, t, cond)``, or with guidance (w != 1) :func:`guide` of the conditional and null-label
    halves of one call ``fn([x_t; x_t], [t; t], [cond; null])``."""
    if guidance_scale == 1.0:
        return fn(x_t, t, cond)
    out_c, out_u = fn(torch.cat([x_t, x_t]), torch.cat([t, t]), with_null_labels(cond)).chunk(2)
    return guide(out_c, out_u, guidance_scale)
