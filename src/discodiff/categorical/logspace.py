r"""Log-space helpers for categorical distributions over the last dimension.

Every categorical quantity in :mod:`discodiff.categorical` is a tensor of log-probabilities
``(..., S)``; zero probabilities are ``-inf``. These helpers never produce NaN from a ``-inf``
entry: :math:`0 \log 0 = 0` is handled explicitly.
"""

from __future__ import annotations

import torch
from torch import Tensor

NEG_INF = float("-inf")


def log_normalize(log_p: Tensor) -> Tensor:
    r""":math:`\log p_j - \log\sum_k p_k` over the last dimension (``log_softmax``, which keeps only
    its output for the backward pass and handles ``-inf`` entries)."""
    return torch.log_softmax(log_p, dim=-1)


def categorical_kl(log_q: Tensor, log_p: Tensor) -> Tensor:
    r""":math:`D_{KL}(q\,\|\,p) = \sum_j q_j(\log q_j - \log p_j)` over the last dimension.

    Terms with :math:`q_j = 0` are 0 (also where :math:`p_j = 0`), and their gradient with respect
    to ``log_p`` is 0. ``log_q`` and ``log_p`` broadcast against each other. When only ``log_p``
    needs a gradient (a fixed target, as in every bound here), the backward pass keeps just
    ``log_q``: :math:`\partial D/\partial\log p_j = -q_j`.

    Args:
        log_q: ``(..., S)`` normalized log-probabilities of the first argument.
        log_p: ``(..., S)`` normalized log-probabilities of the second argument.

    Returns:
        ``(...)`` KL divergences in nats.
    """
    if not log_q.requires_grad:
        return _KLToTarget.apply(log_q, log_p)
    q = log_q.exp()
    diff = torch.where(q > 0, log_q - log_p, 0.0)
    return (q * diff).sum(dim=-1)


class _KLToTarget(torch.autograd.Function):
    """:func:`categorical_kl` for a constant ``log_q``: saves ``log_q`` only."""

    @staticmethod
    def forward(ctx, log_q: Tensor, log_p: Tensor) -> Tensor:
        terms = log_q - log_p
        terms.masked_fill_(log_q == NEG_INF, 0.0)
        terms.mul_(log_q.exp())
        ctx.save_for_backward(log_q)
        ctx.log_p_shape = log_p.shape
        return terms.sum(dim=-1)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[None, Tensor]:
        (log_q,) = ctx.saved_tensors
        return None, _unbroadcast(-grad[..., None] * log_q.exp(), ctx.log_p_shape)


def log_matmul(log_p: Tensor, matrix: Tensor) -> Tensor:
    r""":math:`\log(p\,M)` for a batch of row vectors and row-stochastic matrices, stably.

    :math:`\log\sum_i p_i M_{ij} = m + \log\sum_i e^{\log p_i - m} M_{ij}` with
    :math:`m = \max_i \log p_i`, computed in the matrix's dtype (float64 for the dense
    transitions).

    Args:
        log_p: ``(B, N, S)`` log row vectors (N per example).
        matrix: ``(B, S, S)`` non-negative matrices, one per example.

    Returns:
        ``(B, N, S)`` in ``matrix``'s dtype.
    """
    log_p = log_p.to(matrix.dtype)
    shift = log_p.amax(dim=-1, keepdim=True).clamp(min=torch.finfo(matrix.dtype).min)
    prod = torch.bmm(torch.exp(log_p - shift), matrix)
    positive = prod > 0  # log(0) = -inf, with a zero (not NaN) gradient
    return torch.where(positive, torch.log(torch.where(positive, prod, 1.0)) + shift, NEG_INF)


class _LogAddExp(torch.autograd.Function):
    r"""``torch.logaddexp`` whose gradient is 0, not NaN, where both inputs are ``-inf``.

    The backward pass keeps one weight tensor :math:`w = e^{a - \mathrm{out}}` (the gradient
    with respect to a; :math:`1 - w` is b's) and a mask of the both-``-inf`` entries, instead of
    both inputs and the output.
    """

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor) -> Tensor:
        out = torch.logaddexp(a, b)
        vanished = out == NEG_INF
        weight = (a - out).exp_().masked_fill_(vanished | (a == NEG_INF), 0.0)
        ctx.save_for_backward(weight, vanished)
        ctx.shapes = (a.shape, b.shape)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        weight, vanished = ctx.saved_tensors
        shape_a, shape_b = ctx.shapes
        grad_a = _unbroadcast(grad * weight, shape_a) if ctx.needs_input_grad[0] else None
        grad_b = None
        if ctx.needs_input_grad[1]:
            grad_b = _unbroadcast(grad * (1 - weight).masked_fill_(vanished, 0.0), shape_b)
        return grad_a, grad_b


def _unbroadcast(grad: Tensor, shape: torch.Size) -> Tensor:
    """Sum a broadcast gradient back to ``shape``."""
    while grad.dim() > len(shape):
        grad = grad.sum(dim=0)
    dims = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    return grad.sum(dim=dims, keepdim=True) if dims else grad


def log_add_exp(a: Tensor, b: Tensor) -> Tensor:
    r""":math:`\log(e^a + e^b)`, broadcasting, with a NaN-free gradient.

    ``torch.logaddexp`` returns ``-inf`` where both inputs are ``-inf`` but its gradient there is
    NaN (``exp(-inf - -inf)``), even when the upstream gradient is 0, which poisons every
    parameter. Zero-probability states are common here ([MASK] under an x_0 distribution, data
    states under the absorbing stationary distribution), so every log-space sum goes through this.
    """
    if a.requires_grad or b.requires_grad:
        return _LogAddExp.apply(a, b)
    return torch.logaddexp(a, b)
