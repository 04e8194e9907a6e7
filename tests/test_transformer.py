"""The sequence transformer: shapes, masking, conditioning, RoPE, KV cache, autocast."""

from __future__ import annotations

import pytest
import torch

from discodiff.nets import NETS, NetSpec
from discodiff.nets.attention import apply_rope, rope_angles
from discodiff.nets.transformer import Transformer, TransformerConfig

SMALL = TransformerConfig(width=32, depth=2, heads=4, cond_dim=16, time_dim=16)


def make_net(spec: NetSpec, config: TransformerConfig = SMALL, seed: int = 0) -> Transformer:
    """A transformer whose zero-initialized parts (adaLN, head) are randomized, so every input
    and every conditioning path visibly changes the output."""
    torch.manual_seed(seed)
    net = Transformer(spec, config)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.3)
    return net.eval()


@pytest.mark.parametrize("positions", ["rope", "learned"])
@pytest.mark.parametrize("causal", [False, True])
def test_token_shapes(positions: str, causal: bool) -> None:
    net = make_net(
        NetSpec((12,), 7, input_vocab=9, causal=causal),
        TransformerConfig(**{**SMALL.__dict__, "positions": positions}),
    )
    x = torch.randint(0, 9, (3, 12))
    out = net(x, torch.rand(3))
    assert out.shape == (3, 12, 7) and out.dtype == torch.float32


def test_vector_input_path() -> None:
    """Embedding diffusion feeds (B, L, d_in) floats when the spec has no vocabulary."""
    net = make_net(NetSpec((10, 5), 5))
    x = torch.randn(2, 10, 5)
    out = net(x, torch.rand(2))
    assert out.shape == (2, 10, 5)
    with pytest.raises(ValueError, match=r"\(B, L, 5\) float"):
        net(torch.randn(2, 10, 4), torch.rand(2))
    with pytest.raises(ValueError, match="event shape"):
        Transformer(NetSpec((10,), 5), SMALL)


def test_registry_builds_the_transformer() -> None:
    net = NETS.get("transformer")(SMALL, NetSpec((8,), 4, input_vocab=5))
    assert isinstance(net, Transformer)
    assert net(torch.zeros(2, 8, dtype=torch.long), torch.rand(2)).abs().max() == 0  # zero-init head


@pytest.mark.parametrize("positions", ["rope", "learned"])
def test_causal_outputs_ignore_the_future(positions: str) -> None:
    net = make_net(
        NetSpec((16,), 6, input_vocab=6, causal=True),
        TransformerConfig(**{**SMALL.__dict__, "positions": positions}),
    )
    x = torch.randint(0, 6, (4, 16))
    y = x.clone()
    y[:, 9:] = (y[:, 9:] + 1) % 6
    with torch.no_grad():
        a, b = net(x), net(y)
    torch.testing.assert_close(a[:, :9], b[:, :9], rtol=0, atol=0)
    assert (a[:, 9:] - b[:, 9:]).abs().amax(dim=(0, 2)).min() > 1e-3


def test_bidirectional_sees_both_sides() -> None:
    net = make_net(NetSpec((16,), 6, input_vocab=6))
    x = torch.randint(0, 6, (2, 16))
    t = torch.rand(2)
    with torch.no_grad():
        base = net(x, t)
        for pos, probe in ((15, 0), (0, 15)):  # a change at one end reaches the other
            y = x.clone()
            y[:, pos] = (y[:, pos] + 1) % 6
            assert (net(y, t)[:, probe] - base[:, probe]).abs().max() > 1e-3


def test_time_and_label_conditioning() -> None:
    x = torch.randint(0, 6, (2, 8))
    net = make_net(NetSpec((8,), 6, input_vocab=6, num_classes=3))
    with torch.no_grad():
        a = net(x, torch.tensor([0.1, 0.1]), torch.tensor([0, 1]))
        b = net(x, torch.tensor([0.9, 0.9]), torch.tensor([0, 1]))
        c = net(x, torch.tensor([0.1, 0.1]), torch.tensor([2, -1]))
        null = net(x, torch.tensor([0.1, 0.1]), None)
    assert (a - b).abs().max() > 1e-3 and (a - c).abs().max() > 1e-3
    torch.testing.assert_close(null[1], c[1])  # cond=None is the null label -1
    causal = make_net(NetSpec((8,), 6, input_vocab=6, causal=True))
    with torch.no_grad():  # an AR network has no time input
        torch.testing.assert_close(causal(x, torch.zeros(2)), causal(x, torch.ones(2)))
        torch.testing.assert_close(causal(x, None), causal(x, torch.ones(2)))


def test_rope_depends_on_relative_position_only() -> None:
    torch.manual_seed(0)
    q, k = torch.randn(1, 1, 1, 8, dtype=torch.float64), torch.randn(1, 1, 1, 8, dtype=torch.float64)

    def score(m: int, n: int) -> float:
        am, an = rope_angles(m, 1, 8, 10_000.0, q.device), rope_angles(n, 1, 8, 10_000.0, q.device)
        qm = apply_rope(q, torch.polar(torch.ones_like(am), am).to(torch.complex128))
        kn = apply_rope(k, torch.polar(torch.ones_like(an), an).to(torch.complex128))
        return float((qm * kn).sum())

    assert score(3, 1) == pytest.approx(score(40, 38), abs=1e-5)
    assert score(3, 1) != pytest.approx(score(3, 2), abs=1e-3)
    assert score(0, 0) == pytest.approx(float((q * k).sum()), abs=1e-12)


@pytest.mark.parametrize("positions", ["rope", "learned"])
def test_kv_cache_matches_full_forward(positions: str) -> None:
    config = TransformerConfig(**{**SMALL.__dict__, "positions": positions})
    net = make_net(NetSpec((12,), 7, input_vocab=8, causal=True, num_classes=3), config)
    x = torch.randint(0, 8, (3, 12))
    cond = torch.tensor([0, -1, 2])
    with torch.no_grad():
        full = net(x, None, cond)
        cache = net.init_cache()
        chunks = [net(x[:, a:b], None, cond, cache=cache) for a, b in [(0, 1), (1, 4), (4, 5), (5, 12)]]
    assert cache.length == 12
    torch.testing.assert_close(torch.cat(chunks, dim=1), full, rtol=1e-5, atol=1e-5)


def test_cache_errors() -> None:
    causal = make_net(NetSpec((4,), 3, input_vocab=3, causal=True))
    cache = causal.init_cache()
    causal(torch.zeros(1, 4, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="overflow"):
        causal(torch.zeros(1, 1, dtype=torch.long), cache=cache)
    bidirectional = make_net(NetSpec((4,), 3, input_vocab=3))
    with pytest.raises(ValueError, match="causal"):
        bidirectional.init_cache()


def test_bad_inputs_raise() -> None:
    net = make_net(NetSpec((8,), 5, input_vocab=5))
    with pytest.raises(ValueError, match=r"token input has ids in \[5, 5\]; allowed: 0 \.\. 4"):
        net(torch.full((1, 8), 5), torch.rand(1))
    with pytest.raises(ValueError, match="time-conditioned"):
        net(torch.zeros(1, 8, dtype=torch.long), None)
    with pytest.raises(ValueError, match="unconditional"):
        net(torch.zeros(1, 8, dtype=torch.long), torch.rand(1), torch.zeros(1, dtype=torch.long))
    with pytest.raises(ValueError, match="long"):
        net(torch.zeros(1, 8), torch.rand(1))
    learned = make_net(
        NetSpec((8,), 5, input_vocab=5), TransformerConfig(**{**SMALL.__dict__, "positions": "learned"})
    )
    with pytest.raises(ValueError, match="max_len"):
        learned(torch.zeros(1, 9, dtype=torch.long), torch.rand(1))
    with pytest.raises(ValueError, match="divisible"):
        TransformerConfig(width=30, heads=4)


def test_rope_runs_longer_than_training_length() -> None:
    net = make_net(NetSpec((8,), 5, input_vocab=5))
    assert net(torch.zeros(2, 20, dtype=torch.long), torch.rand(2)).shape == (2, 20, 5)


@pytest.mark.parametrize("causal", [False, True])
def test_bf16_autocast_forward_and_backward(causal: bool) -> None:
    net = make_net(NetSpec((16,), 6, input_vocab=7, causal=causal, num_classes=2))
    x = torch.randint(0, 7, (4, 16))
    t, cond = torch.rand(4), torch.tensor([0, 1, -1, 0])
    ref = net(x, t, cond)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x, t, cond)
        loss = out.float().square().mean()
    loss.backward()
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    assert (out.float() - ref).abs().max() < 0.05 * ref.abs().max()
    assert all(
        p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters() if p.requires_grad
    )


def test_one_hot_linear_matches_the_dense_layer_in_value_and_gradients():
    """OneHotLinear at straight-through one-hot inputs (a discrete flow's states) against
    nn.Linear with the same parameters: outputs, and gradients of the input's logits, the weight
    and the bias; a NaN row stays NaN. Fails if the lookup or any of the three gradients is wrong."""
    from discodiff.flows.modular import straight_through
    from discodiff.nets.one_hot import OneHotLinear

    gen = torch.Generator().manual_seed(0)
    dense = torch.nn.Linear(7, 5)
    fast = OneHotLinear(7, 5)
    fast.load_state_dict(dense.state_dict())
    logits = torch.randn(3, 4, 7, generator=gen, requires_grad=True)
    g = torch.randn(3, 4, 5, generator=gen)
    grads = []
    for layer in (dense, fast):
        layer.zero_grad()
        out = layer(straight_through(logits, 0.5))
        grads.append([out, *torch.autograd.grad((out * g).sum(), [logits, layer.weight, layer.bias])])
    for got, want in zip(grads[1], grads[0]):
        assert float(want.detach().abs().max()) > 0.01
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    bad = logits.detach().clone()
    bad[1, 2, 3] = float("nan")
    out = fast(straight_through(bad, 0.5))
    assert bool(out[1, 2].isnan().all()) and bool(out.isfinite().sum() == out.numel() - 5)
