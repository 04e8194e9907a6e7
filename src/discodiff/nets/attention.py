r"""Self-attention for the sequence transformer: rotary position embeddings and a KV cache.

Attention runs through ``torch.nn.functional.scaled_dot_product_attention`` (fused kernels on
CPU and CUDA). RoPE (Su et al. 2021) rotates queries and keys by position-dependent angles so
that their dot product depends on the relative position only; it is written in the half-split
form of GPT-NeoX (pairs :math:`(x_i, x_{i+d/2})` rather than adjacent pairs, a fixed permutation
of the head dimensions). The :class:`KVCache` keeps every layer's keys and values so that causal
decoding feeds one new token per call.
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


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    r"""Rotate the pairs :math:`(x_i, x_{i + d/2})` by :math:`\theta_{p,i}`: ``x`` (B, nh, L, hs),
    ``cos``/``sin`` (L, hs / 2), computed in float32 and applied in ``x``'s dtype."""
    x1, x2 = x.chunk(2, dim=-1)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


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
        q, k, v = self.qkv(h).split(C, dim=2)
        q = q.view(B, L, self.heads, C // self.heads).transpose(1, 2)  # (B, nh, L, hs)
        k = k.view(B, L, self.heads, C // self.heads).transpose(1, 2)  # (B, nh, L, hs)
        v = v.view(B, L, self.heads, C // self.heads).transpose(1, 2)  # (B, nh, L, hs)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
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
