r"""Self-attention for the sequence transformer: rotary position embeddings and a KV cache.

Attention runs through ``torch.nn.functional.scaled_dot_product_attention`` (fused kernels on
CPU and CUDA). RoPE (Su et al. 2021) rotates queries and keys by position-dependent angles so
that their dot product depends on the relative position only; it is written in the half-split
form of GPT-NeoX (pairs :math:`(x_i, x_{i+d/2})` rather than adjacent pairs, a fixed permutation
of the head dimensions). It is computed as one complex multiplication on queries and keys
together (:func:`apply_rope`) after a fixed reordering of the projection's rows
(:func:`interleaved_order`), with the :math:`e^{i\theta}` tables computed once and kept
(:class:`RopeTables`). The :class:`KVCache` keeps every layer's keys and values so that causal
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


class RopeTables:
    r""":math:`e^{i\theta_{p,j}}` for positions ``0..n-1`` as complex64, computed once per device and kept
    (grown on demand); :meth:`get` slices a forward pass's positions out, shaped ``(L, 1, 1, hs / 2)``
    to broadcast over ``(B, L, 2, nh, hs / 2)`` (queries and keys together)."""

    def __init__(self, head_dim: int, base: float) -> None:
        self.head_dim, self.base = head_dim, base
        self._tables: dict[torch.device, Tensor] = {}

    def get(self, start: int, length: int, device: torch.device) -> Tensor:
        table = self._tables.get(device)
        if table is None or table.shape[0] < start + length:
            n = max(start + length, 2 * (0 if table is None else table.shape[0]))
            angles = rope_angles(0, n, self.head_dim, self.base, device)
            table = torch.polar(torch.ones_like(angles), angles)[:, None, None, :]
            self._tables[device] = table
        return table[start : start + length]


def interleaved_order(width: int, heads: int) -> Tensor:
    r"""Row order of the fused qkv projection that puts each query and key head's RoPE pairs
    :math:`(x_i, x_{i+d/2})` next to each other, :math:`(x_0, x_{d/2}, x_1, x_{d/2+1}, \dots)`; values keep
    theirs. Queries and keys permuted alike have the same dot products, so attention is unchanged
    and the weights stay in the half-split layout (checkpoints are unaffected). ``(3 width,)`` long."""
    hs = width // heads
    half = torch.arange(hs // 2)
    within = torch.stack([half, half + hs // 2], dim=1).reshape(-1)  # (hs,)
    qk = (torch.arange(2 * heads)[:, None] * hs + within).reshape(-1)
    return torch.cat([qk, torch.arange(2 * width, 3 * width)])


def apply_rope(x: Tensor, freqs: Tensor) -> Tensor:
    r"""Rotate each pair :math:`(x_{2j}, x_{2j+1})` of ``x`` (..., hs) by :math:`\theta_{p,j}`: one
    complex multiplication by ``freqs`` (broadcasting against (..., hs / 2)), in float32 (complex64)
    for half-precision inputs (float64 stays float64), returned in ``x``'s dtype. With the pairs
    laid out by :func:`interleaved_order` this is the half-split rotation
    :math:`(x_j\cos - x_{j+d/2}\sin,\ x_{j+d/2}\cos + x_j\sin)`."""
    work = x if x.dtype in (torch.float32, torch.float64) else x.float()
    pairs = torch.view_as_complex(work.unflatten(-1, (-1, 2)))
    return torch.view_as_real(pairs * freqs).flatten(-2).to(x.dtype)


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
    """Multi-head self-attention through ``scaled_dot_product_attention``; with ``rope`` the
    queries and keys come out of the projection pairwise interleaved (:func:`interleaved_order`)
    and are rotated together."""

    def __init__(self, width: int, heads: int, dropout: float, *, rope: bool = False) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.proj = nn.Linear(width, width, bias=False)
        order = interleaved_order(width, heads) if rope else None
        self.register_buffer("order", order, persistent=False)

    def forward(
        self, h: Tensor, rope: Tensor | None, causal: bool, cache: KVCache | None, layer: int
    ) -> Tensor:
        B, L, C = h.shape  # batch, new positions, width
        weight = self.qkv.weight if rope is None else self.qkv.weight.index_select(0, self.order)
        qk, v = F.linear(h, weight).split([2 * C, C], dim=-1)
        qk = qk.view(B, L, 2, self.heads, C // self.heads)  # (B, L, 2, nh, hs)
        if rope is not None:
            qk = apply_rope(qk, rope)  # queries and keys rotated at once
        q, k = (part.transpose(1, 2) for part in qk.unbind(2))  # (B, nh, L, hs) each
        v = v.view(B, L, self.heads, C // self.heads).transpose(1, 2)  # (B, nh, L, hs)
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
