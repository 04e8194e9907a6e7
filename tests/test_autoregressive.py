"""The autoregressive baseline: exact NLL, cached = uncached sampling, known tokens, the sampled
distribution against the model's enumerated joint."""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
import torch
from scipy.stats import chisquare

from discodiff.autoregressive import ARConfig, Autoregressive, build_ar
from discodiff.base import METHODS, Batch
from discodiff.data.base import DataInfo
from discodiff.nets import NETS, NetSpec
from discodiff.nets.transformer import TransformerConfig

NET = TransformerConfig(width=32, depth=2, heads=4, cond_dim=16, time_dim=16)
CHI2_LEVEL = 1e-3  # reject the sampler only at p < 0.001


def make_ar(
    vocab: int = 5,
    shape: tuple[int, ...] = (10,),
    num_classes: int = 0,
    seed: int = 0,
    scale: float = 0.3,
    **options,
) -> Autoregressive:
    """An AR model with a random (not zero-initialized) causal transformer."""
    torch.manual_seed(seed)
    info = DataInfo(event_shape=shape, kind="tokens", vocab_size=vocab, num_classes=num_classes)
    model = build_ar(ARConfig(**options), info, lambda spec: NETS.get("transformer")(NET, spec))
    with torch.no_grad():
        for p in model.net.parameters():
            p.normal_(0.0, scale)
    return model.eval()


def with_options(model: Autoregressive, **options) -> Autoregressive:
    """The same network under other method options."""
    config = dataclasses.replace(model.config, **options)
    return Autoregressive(
        model.net,
        config,
        vocab_size=model.vocab_size,
        event_shape=model.event_shape,
        num_classes=model.num_classes,
    )


def test_nll_is_the_sum_of_next_token_cross_entropies() -> None:
    model = make_ar()
    x = torch.randint(0, 5, (3, 10))
    out = model.nll(Batch(x))
    # independently: -log p(x_i | x_<i) from the network run on the prefix (BOS, x_0..x_{i-1}) alone
    expected = torch.zeros(3, dtype=torch.float64)
    with torch.no_grad():
        for i in range(10):
            prefix = torch.cat([torch.full((3, 1), model.bos), x[:, :i]], dim=1)
            log_p = torch.log_softmax(model.net(prefix, torch.zeros(3)).double()[:, -1], dim=-1)
            expected -= log_p[torch.arange(3), x[:, i]]
    torch.testing.assert_close(out.nll, expected, rtol=1e-5, atol=1e-5)
    assert out.nll.dtype == torch.float64 and out.num_dims.tolist() == [10.0] * 3
    assert model.nll(Batch(x), estimator="exact").nll.equal(out.nll)
    loss = model.loss(Batch(x))
    torch.testing.assert_close(loss.loss.double(), out.nll.sum() / 30, rtol=1e-5, atol=1e-6)


def test_fresh_model_predicts_uniform() -> None:
    info = DataInfo(event_shape=(6,), kind="tokens", vocab_size=7)
    model = METHODS.get("ar")(ARConfig(), info, lambda spec: NETS.get("transformer")(NET, spec))
    x = torch.randint(0, 7, (2, 6))
    torch.testing.assert_close(
        model.nll(Batch(x)).nll, torch.full((2,), 6 * math.log(7), dtype=torch.float64)
    )


def test_cached_sampling_equals_uncached() -> None:
    cached = make_ar(vocab=6, shape=(12,), temperature=0.8, top_p=0.9)
    uncached = with_options(cached, kv_cache=False)
    known = torch.randint(0, 6, (8, 12))
    mask = torch.rand(8, 12) < 0.3
    for kw in ({}, {"known": known, "known_mask": mask}):
        a = cached.sample(8, generator=torch.Generator().manual_seed(1), **kw)
        b = uncached.sample(8, generator=torch.Generator().manual_seed(1), **kw)
        assert a.x.equal(b.x) and a.nfe == b.nfe == 12
    c = cached.sample(8, generator=torch.Generator().manual_seed(2))
    assert not c.x.equal(a.x)


def test_known_tokens_are_never_changed() -> None:
    model = make_ar(vocab=4, shape=(3, 5))  # a 2D event in raster order
    known = torch.randint(0, 4, (6, 3, 5))
    mask = torch.rand(6, 3, 5) < 0.5
    mask[0] = True
    out = model.sample((6, 3, 5), known=known, known_mask=mask, generator=torch.Generator().manual_seed(0))
    assert out.x.shape == (6, 3, 5) and out.x.dtype == torch.long
    assert out.x[mask].equal(known[mask])
    with pytest.raises(ValueError, match=r"token sequence has ids in \[0, 7\]; allowed: 0 \.\. 3"):
        model.sample(6, known=known + 4, known_mask=mask)


def test_samples_follow_the_model_joint() -> None:
    """Chi-square of 20,000 draws against the enumerated p(x) = prod_i p(x_i | x_<i) (27 cells)."""
    model = make_ar(vocab=3, shape=(3,), scale=0.5)
    grid = torch.tensor(list(itertools.product(range(3), repeat=3)))
    probs = torch.exp(-model.nll(Batch(grid)).nll)
    assert float(probs.sum()) == pytest.approx(1.0, abs=1e-6)
    x = model.sample(20_000, generator=torch.Generator().manual_seed(0)).x
    counts = torch.bincount(x[:, 0] * 9 + x[:, 1] * 3 + x[:, 2], minlength=27)
    assert chisquare(counts.numpy(), (probs / probs.sum()).numpy() * 20_000).pvalue > CHI2_LEVEL


def test_guidance_and_labels() -> None:
    model = make_ar(vocab=4, shape=(6,), num_classes=2)
    cond = torch.tensor([0, 1, 1])
    g = torch.Generator
    plain = model.sample(3, cond=cond, generator=g().manual_seed(0))
    unit = model.sample(3, cond=cond, guidance_scale=1.0, generator=g().manual_seed(0))
    guided = model.sample(3, cond=cond, guidance_scale=3.0, generator=g().manual_seed(0))
    uncached = with_options(model, kv_cache=False).sample(
        3, cond=cond, guidance_scale=3.0, generator=g().manual_seed(0)
    )
    assert plain.x.equal(unit.x) and guided.x.equal(uncached.x)
    assert plain.nfe == 6 and guided.nfe == 12
    assert model.loss(Batch(torch.randint(0, 4, (3, 6)), cond)).loss.isfinite()
    with pytest.raises(ValueError, match="needs class labels"):
        model.sample(3, guidance_scale=2.0)


def test_interface_errors() -> None:
    model = make_ar()
    with pytest.raises(ValueError, match="one step per token"):
        model.sample(2, steps=5)
    assert model.sample(2, return_trajectory=True).trajectory == []
    with pytest.raises(ValueError, match="unknown sampler"):
        model.sample(2, sampler="euler")
    with pytest.raises(ValueError, match="unknown likelihood estimator"):
        model.nll(Batch(torch.zeros(1, 10, dtype=torch.long)), estimator="ode")
    with pytest.raises(ValueError, match=r"token sequence has ids in \[5, 5\]; allowed: 0 \.\. 4"):
        model.nll(Batch(torch.full((1, 10), 5)))
    with pytest.raises(ValueError, match="unconditional"):
        model.sample(2, cond=torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="token data"):
        build_ar(ARConfig(), DataInfo(event_shape=(2,)), lambda spec: None)
    with pytest.raises(ValueError, match="incremental decoding"):
        Autoregressive(lambda x, t, c: x, ARConfig(), vocab_size=3, event_shape=(4,))
    with pytest.raises(ValueError, match="top_p"):
        ARConfig(top_p=0.0)


def test_training_lowers_the_loss_under_bf16_autocast() -> None:
    torch.manual_seed(0)
    info = DataInfo(event_shape=(16,), kind="tokens", vocab_size=4)
    model = build_ar(ARConfig(), info, lambda spec: NETS.get("transformer")(NET, spec))
    x = torch.arange(16).repeat(8, 1) % 4  # a deterministic pattern: 0 1 2 3 0 1 ...
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model.loss(Batch(x))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(float(out.loss.detach()))
    assert losses[0] == pytest.approx(math.log(4), abs=1e-3)
    assert losses[-1] < 0.1 * losses[0]


def test_spec_asks_for_a_causal_net_with_a_start_id() -> None:
    specs: list[NetSpec] = []

    def factory(spec: NetSpec):
        specs.append(spec)
        return NETS.get("transformer")(NET, spec)

    build_ar(ARConfig(), DataInfo(event_shape=(2, 3), kind="tokens", vocab_size=9, num_classes=4), factory)
    assert specs == [NetSpec((6,), 9, num_classes=4, input_vocab=10, causal=True)]


def test_on_character_text() -> None:
    """The AR baseline on tiny-shakespeare windows: loss, bits/char from nll, decoded samples."""
    from discodiff.data.text import TextConfig, build_text

    data = build_text(TextConfig(seq_len=32))
    model = build_ar(ARConfig(), data.info, lambda spec: NETS.get("transformer")(NET, spec))
    x, _ = data.train_stream(seed=0).next(4)
    assert model.loss(Batch(x)).loss.item() == pytest.approx(math.log(65), abs=1e-4)
    out = model.nll(Batch(data.split("val")[0][:3]))
    bits_per_char = out.nll / out.num_dims / math.log(2)
    torch.testing.assert_close(bits_per_char, torch.full((3,), math.log2(65), dtype=torch.float64))
    samples = model.sample(2, generator=torch.Generator().manual_seed(0)).x
    assert [len(s) for s in data.decode_batch(samples)] == [32, 32]
