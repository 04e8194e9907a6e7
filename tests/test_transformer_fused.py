"""The transformer's fused pieces against their textbook forms: RoPE as one complex multiplication
on queries and keys laid out pairwise (the projection's rows reordered) against the half-split
rotation on the stored weights, and adaLN's modulate / gated add with their hand-written backward
passes (gradcheck in float64)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from discodiff.nets.adaln import gated_add, modulate
from discodiff.nets.attention import RopeTables, SelfAttention, apply_rope, interleaved_order, rope_angles

F64 = torch.float64


def textbook(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Su et al.'s rotation of the pairs (x_i, x_{i + d/2}) (GPT-NeoX's half-split form)."""
    x1, x2 = x.chunk(2, dim=-1)
    cos, sin = angles.cos(), angles.sin()
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def test_interleaved_order_pairs_each_head_and_keeps_values() -> None:
    order = interleaved_order(8, 2)  # heads of size 4: q0 q1 | k0 k1, pairs (0, 2), (1, 3)
    assert order[:8].tolist() == [0, 2, 1, 3, 4, 6, 5, 7]
    assert order[16:].tolist() == list(range(16, 24))
    assert sorted(order.tolist()) == list(range(24))


def test_rotation_is_the_half_split_formula_and_its_gradient_is_exact() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 2, 2, 8, generator=g, dtype=F64)  # (B, L, q/k, nh, hs), half-split
    angles = rope_angles(2, 5, 8, 10_000.0, x.device).double()[:, None, None, :]
    pairs = x.unflatten(-1, (2, 4)).transpose(-1, -2).flatten(-2)  # (x_0, x_4, x_1, x_5, ...)
    rotated = apply_rope(pairs, torch.polar(torch.ones_like(angles), angles))
    back = rotated.unflatten(-1, (4, 2)).transpose(-1, -2).flatten(-2)
    assert torch.allclose(back, textbook(x, angles), atol=1e-14)
    freqs = RopeTables(8, 10_000.0).get(2, 5, x.device)
    assert torch.autograd.gradcheck(
        lambda y: apply_rope(y, freqs.to(torch.complex128)), (pairs.requires_grad_(),)
    )


def test_attention_equals_half_split_rope_on_the_stored_weights() -> None:
    torch.manual_seed(0)
    B, L, C, nh = 2, 7, 16, 2
    attn = SelfAttention(C, nh, 0.0, rope=True).double()
    h = torch.randn(B, L, C, dtype=F64)
    freqs = RopeTables(C // nh, 10_000.0).get(3, L, h.device).to(torch.complex128)
    out = attn(h, freqs, False, None, 0)
    q, k, v = (y.view(B, L, nh, C // nh).transpose(1, 2) for y in attn.qkv(h).split(C, dim=-1))
    angles = rope_angles(3, L, C // nh, 10_000.0, h.device).double()
    y = F.scaled_dot_product_attention(textbook(q, angles), textbook(k, angles), v)
    expected = attn.proj(y.transpose(1, 2).reshape(B, L, C))
    assert torch.allclose(out, expected, atol=1e-6)


def test_tables_are_cached_and_grow_on_demand() -> None:
    tables = RopeTables(8, 10_000.0)
    first = tables.get(0, 4, torch.device("cpu"))
    assert first.dtype == torch.complex64 and first.shape == (4, 1, 1, 4)
    longer = tables.get(2, 30, torch.device("cpu"))
    angles = rope_angles(2, 30, 8, 10_000.0, torch.device("cpu"))
    assert torch.allclose(torch.angle(longer[:, 0, 0]), torch.atan2(angles.sin(), angles.cos()), atol=1e-5)


def test_adaln_operations_and_their_gradients() -> None:
    g = torch.Generator().manual_seed(0)
    x, a = torch.randn(3, 5, 4, generator=g, dtype=F64), torch.randn(3, 5, 4, generator=g, dtype=F64)
    s, b = torch.randn(3, 1, 4, generator=g, dtype=F64), torch.randn(3, 1, 4, generator=g, dtype=F64)
    assert torch.allclose(modulate(x, b, s), x * (1 + s) + b, atol=1e-15)
    assert torch.allclose(gated_add(x, s, a), x + s * a, atol=1e-15)
    inputs = [t.clone().requires_grad_() for t in (x, b, s)]
    assert torch.autograd.gradcheck(modulate, inputs)
    inputs = [t.clone().requires_grad_() for t in (x, s, a)]
    assert torch.autograd.gradcheck(gated_add, inputs)


def test_adaln_gradients_come_back_in_their_inputs_dtypes() -> None:
    h = torch.randn(2, 3, 4, requires_grad=True)
    gate = torch.randn(2, 1, 4, dtype=torch.bfloat16, requires_grad=True)
    a = torch.randn(2, 3, 4, dtype=torch.bfloat16, requires_grad=True)
    gated_add(modulate(h, gate, gate), gate, a).sum().backward()
    assert h.grad.dtype == torch.float32 and gate.grad.dtype == a.grad.dtype == torch.bfloat16
