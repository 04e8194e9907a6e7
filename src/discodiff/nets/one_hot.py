r"""A linear input layer for vectors whose rows are exactly one-hot (a discrete flow's states).

:math:`W x + b` at a one-hot x is column :math:`\arg\max x` of W: :class:`OneHotLinear` looks it
up (O(d) per row instead of O(K d)) and keeps only the ids for backward, where the gradients are
those of the dense layer at that x: :math:`\partial x = g W` (the straight-through gradient that
reaches earlier flow layers), :math:`\partial W = g x^\top` (a scatter of g into the ids' columns),
:math:`\partial b = \sum g`. A row that is not finite is NaN throughout (the flow's operations
make it so, :mod:`~discodiff.flows.modular`); its output row is NaN too, as the dense layer's.
The parameters are ``nn.Linear``'s, so checkpoints do not change.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class _OneHotLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        ids = x.argmax(dim=-1)
        ctx.save_for_backward(ids, weight)
        ctx.in_dtype = x.dtype
        first = x[..., :1].to(weight.dtype)
        return F.embedding(ids, weight.t()).add_(bias).add_(first - first)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        ids, weight = ctx.saved_tensors
        flat = grad.reshape(-1, grad.shape[-1])
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = (grad.to(weight.dtype) @ weight).to(ctx.in_dtype)
        if ctx.needs_input_grad[1]:
            grad_w = torch.zeros_like(weight).index_add_(1, ids.reshape(-1), flat.t().to(weight.dtype))
        if ctx.needs_input_grad[2]:
            grad_b = flat.sum(dim=0).to(weight.dtype)
        return grad_x, grad_w, grad_b


class OneHotLinear(nn.Linear):
    """``nn.Linear(in_features, out_features)`` for inputs ``(..., in_features)`` whose rows are
    one-hot valued; see the module docstring."""

    def forward(self, x: Tensor) -> Tensor:
        return _OneHotLinear.apply(x, self.weight, self.bias)
