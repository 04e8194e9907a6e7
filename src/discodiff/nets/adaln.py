r"""adaLN's two elementwise operations with hand-written backward passes (Peebles & Xie 2023,
Sec. 3.2): :func:`modulate`, :math:`x(1 + s) + b`, and :func:`gated_add`, :math:`h + g\,a`, where the
per-example vectors s, b, g ``(B, 1, d)`` broadcast over the L positions of ``(B, L, d)``.

Autograd's ``addcmul`` backward multiplies every gradient by the scalar ``value`` once more and
keeps both products; these keep one product per input (the reductions over L stay), which is a
few passes over ``(B, L, d)`` less per block. Gradients come back in their inputs' dtypes (under
autocast the residual stream is float32 and the modulations bfloat16).
"""

from __future__ import annotations

import torch
from torch import Tensor


class _Modulate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
        ctx.save_for_backward(x, scale)
        return torch.addcmul(shift, x, 1 + scale)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x, scale = ctx.saved_tensors
        grad_x = (grad * (1 + scale)).to(x.dtype)
        grad_scale = (grad * x).sum(dim=1, keepdim=True).to(scale.dtype)
        return grad_x, grad.sum(dim=1, keepdim=True).to(scale.dtype), grad_scale


class _GatedAdd(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h: Tensor, gate: Tensor, a: Tensor) -> Tensor:
        ctx.save_for_backward(gate, a)
        ctx.h_dtype = h.dtype
        return torch.addcmul(h, gate, a)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        gate, a = ctx.saved_tensors
        grad_gate = (grad * a).sum(dim=1, keepdim=True).to(gate.dtype)
        return grad.to(ctx.h_dtype), grad_gate, (grad * gate).to(a.dtype)


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """``x * (1 + scale) + shift``: x (B, L, d), shift/scale (B, 1, d)."""
    return _Modulate.apply(x, shift, scale)


def gated_add(h: Tensor, gate: Tensor, a: Tensor) -> Tensor:
    """``h + gate * a``: h, a (B, L, d), gate (B, 1, d)."""
    return _GatedAdd.apply(h, gate, a)
