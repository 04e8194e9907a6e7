"""The fused RoPE rotation and its cached tables against the textbook half-split formula."""

from __future__ import annotations

import torch

from discodiff.nets.attention import RopeTables, apply_rope, rope_angles


def textbook(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def test_fused_rotation_and_its_gradient_equal_the_formula() -> None:
    g = torch.Generator().manual_seed(0)
    qkv = torch.randn(2, 5, 3, 2, 8, generator=g, dtype=torch.float64)  # (B, L, 3, nh, hs)
    x = qkv[:, :, :2].requires_grad_()  # a strided view, as in the attention layer
    cos, sin = RopeTables(8, 10_000.0).get(3, 5, x.device, torch.float64)
    assert torch.allclose(apply_rope(x, cos, sin), textbook(x, cos, sin), atol=1e-14)
    assert torch.autograd.gradcheck(lambda y: apply_rope(y, cos, sin), (x.detach().clone().requires_grad_(),))


def test_tables_are_cached_per_dtype_and_grow_on_demand() -> None:
    tables = RopeTables(8, 10_000.0)
    cos, _ = tables.get(0, 4, torch.device("cpu"), torch.bfloat16)
    assert cos.dtype == torch.bfloat16 and cos.shape == (4, 1, 1, 4)
    cos64, sin64 = tables.get(2, 30, torch.device("cpu"), torch.float64)
    angles = rope_angles(2, 30, 8, 10_000.0, torch.device("cpu")).double()
    assert torch.allclose(cos64[:, 0, 0], angles.cos(), atol=1e-6)
    assert torch.allclose(sin64[:, 0, 0], angles.sin(), atol=1e-6)
    assert tables.get(0, 4, torch.device("cpu"), torch.bfloat16)[0] is not None
