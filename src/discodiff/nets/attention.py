r"""Self-attention for the sequence transformer: rotary position embeddings and a KV cache.

Attention runs through ``torch.nn.functional.scaled_dot_product_attention`` (fused kernels on
CPU and CUDA). RoPE (Su et al. 2021) rotates queries and keys by position-dependent angles so
that their dot product depends on the relative position only; it is written in the half-split
form of GPT-NeoX (pairs :math:`(x_i, x_{i+d/2})` rather than adjacent pairs, a fixed permutation
of the head dimensions), applied to queries and keys in one fused rotation (:func:`apply_rope`)
with cos/sin tables computed once and kept in the compute dtype (:class:`RopeTables`). The
:class:`KVCache` keeps every layer's keys and values so that causal decoding feeds one new token
per call.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def rope_angles(start: int, length: int, head_dim: int, base: float, device: torch.device) -> Tensor:
    r"""Rotation angles :math:`\theta_{p,i} = p\,b^{-2i/d}` for positions ``start..start+length-1``:
    ``(length, head_dim / 2)`` float32 (Su et al. 2021, Sec. 3.2.2)."""
    inv_freq = base ** (-torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)
    pos = torch.arange(start, start + length, device=device, dtype=torch.float32)
    return pos[:, None] * inv_freq[None, :]


class RopeTables:
    r""":math:`\cos\theta` and :math:`\sin\theta` for positions ``0..n-1``, computed in float32 once
    per (device, dtype) and kept, cast to the compute dtype; :meth:`get` slices a forward pass's
    positions out, shaped ``(L, 1, 1, hs / 2)`` to broadcast over ``(B, L, 2, nh, hs / 2)``."""

    def __init__(self, head_dim: int, base: float) -> None:
        self.head_dim, self.base = head_dim, base
        self._tables: dict[tuple[torch.device, torch.dtype], tuple[Tensor, Tensor]] = {}

    def get(self, start: int, length: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        key = (device, dtype)
        cos, sin = self._tables.get(key, (None, None))
        if cos is None or cos.shape[0] < start + length:
            n = max(start + length, 2 * (0 if cos is None else cos.shape[0]))
            angles = rope_angles(0, n, self.head_dim, self.base, device)
            cos, sin = (a.to(dtype)[:, None, None, :] for a in (angles.cos(), angles.sin()))
            self._tables[key] = cos, sin
        return cos[start : start + length], sin[start : start + length]


class _Rope(torch.autograd.Function):
    r"""The rotation of :func:`apply_rope` in four fused multiply-adds, with its inverse rotation as
    the backward pass (:math:`\partial/\partial x_1 = g_1\cos + g_2\sin`,
    :math:`\partial/\partial x_2 = g_2\cos - g_1\sin`); keeps only the tables for the backward."""

    @staticmethod
    def forward(ctx, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        ctx.save_for_backward(cos, sin)
        return _rotate(x, cos, sin, 1.0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        cos, sin = ctx.saved_tensors
        return _rotate(grad, cos, sin, -1.0), None, None


def _rotate(x: Tensor, cos: Tensor, sin: Tensor, sign: float) -> Tensor:
    """``(x1 cos - sign x2 sin, x2 cos + sign x1 sin)`` into a new contiguous tensor."""
    out = x.new_empty(x.shape)
    x1, x2 = x.chunk(2, dim=-1)
    o1, o2 = out.chunk(2, dim=-1)
    torch.mul(x1, cos, out=o1).addcmul_(x2, sin, value=-sign)
    torch.mul(x2, cos, out=o2).addcmul_(x1, sin, value=sign)
    return out


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    r"""Rotate the pairs :math:`(x_i, x_{i + d/2})` by :math:`\theta_{p,i}`: ``x`` (..., hs) with
    ``cos``/``sin`` (..., hs / 2) broadcasting against its halves, in their (the compute) dtype."""
    return _Rope.apply(x, cos, sin)


class KVCache:
    """Keys and values of every layer, for causal incremental decoding.

    One ``(B, nh, capacity, hs)`` buffer per layer for keys and one for values, allocated at the
    first write in the keys' dtype (bf16 under autocast). ``length`` positions are filled; a
    forward pass with a cache reads its new tokens as positions ``length, length + 1, ...`` and
    advances ``length`` by their number.
    """

    def __init__(self, depth: int, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"KV cache capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.length = 0
        self.conditioning: Tensor | None = None  # the network's adaLN input for these sequences
        self.keys: list[Tensor | None] = [None] * depth
        self.values: list[Tensor | None] = [None] * depth

    def write(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store new keys/values (B, nh, L_new, hs) at ``length``; return every cached one so far,
        (B, nh, length + L_new, hs)."""
        B, nh, L_new, hs = k.shape
        end = self.length + L_new
        if end > self.capacity:
            raise ValueError(f"KV cache overflow: {end} positions for a capacity of {self.capacity}")
        if self.keys[layer] is None:
            self.keys[layer] = k.new_empty(B, nh, self.capacity, hs)
            self.values[layer] = v.new_empty(B, nh, self.capacity, hs)
        keys, values = self.keys[layer], self.values[layer]
        keys[:, :, self.length : end] = k
        values[:, :, self.length : end] = v
        return keys[:, :, :end], values[:, :, :end]


class SelfAttention(nn.Module):
    """Multi-head self-attention through ``scaled_dot_product_attention``."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.proj = nn.Linear(width, width, bias=False)

    def forward(
        self, h: Tensor, rope: tuple[Tensor, Tensor] | None, causal: bool, cache: KVCache | None, layer: int
    ) -> Tensor:
        B, L, C = h.shape  # batch, new positions, width
        qkv = self.qkv(h).view(B, L, 3, self.heads, C // self.heads)  # (B, L, 3, nh, hs)
        qk = qkv[:, :, :2] if rope is None else apply_rope(qkv[:, :, :2], *rope)  # q and k rotated at once
        q, k = qk[:, :, 0].transpose(1, 2), qk[:, :, 1].transpose(1, 2)  # (B, nh, L, hs)
        v = qkv[:, :, 2].transpose(1, 2)  # (B, nh, L, hs)
        offset = 0
        if cache is not None:
            offset = cache.length
            k, v = cache.write(layer, k, v)  # (B, nh, offset + L, hs)
        mask = None
        if causal and offset > 0 and L > 1:  # new rows see the whole past and their own prefix
            rows = torch.arange(L, device=h.device)[:, None] + offset
            mask = torch.arange(offset + L, device=h.device)[None, :] <= rows  # (L, offset + L)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=causal and offset == 0 and L > 1,
        )  # (B, nh, L, hs)
        return self.proj(y.transpose(1, 2).reshape(B, L, C))
