"""D3PM with a small trainable network: losses, gradients, sampling options, infilling, validation,
configuration and the builder."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from discodiff.base import METHODS, Batch
from discodiff.categorical import D3PM, D3PMConfig, build_transition
from discodiff.categorical.d3pm import build_d3pm
from discodiff.config import ConfigError, from_dict, to_dict
from discodiff.data import DataInfo
from discodiff.nets import NetSpec

K, L, T = 5, 6, 10

TRANSITION_CONFIGS = {
    "uniform": "uniform",
    "absorbing": "absorbing",
    "marginal": {"name": "marginal", "probs": [1, 2, 3, 4, 5]},
    "gaussian": "gaussian",
}


class TinyNet(nn.Module):
    """Token + position + time embedding, one token-mixing layer, logits over K ids."""

    def __init__(self, spec: NetSpec, width: int = 16) -> None:
        super().__init__()
        self.tokens = nn.Embedding(spec.input_vocab, width)
        self.position = nn.Parameter(0.1 * torch.randn(spec.event_shape[0], width))
        self.time = nn.Linear(1, width)
        self.labels = nn.Embedding(spec.num_classes + 1, width) if spec.num_classes else None
        self.num_classes = spec.num_classes
        self.out = nn.Linear(2 * width, spec.out_channels)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        h = self.tokens(x) + self.position + self.time(t[:, None].float())[:, None]
        if self.labels is not None:
            label = torch.full_like(t, self.num_classes, dtype=torch.long) if cond is None else cond
            h = h + self.labels(torch.where(label < 0, self.num_classes, label))[:, None]
        h = torch.tanh(h)
        return self.out(torch.cat([h, h.mean(dim=1, keepdim=True).expand_as(h)], dim=-1))


def build(transition="uniform", *, num_classes: int = 0, **options) -> D3PM:
    config = from_dict(D3PMConfig, {"transition": transition, "timesteps": T, **options}, "method")
    info = DataInfo((L,), kind="tokens", vocab_size=K, num_classes=num_classes)
    torch.manual_seed(0)
    return build_d3pm(config, info, lambda spec: TinyNet(spec))


def data(n: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, K, (n, L), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("reverse", ["average", "d3pm"])
@pytest.mark.parametrize("name", list(TRANSITION_CONFIGS))
def test_hybrid_loss_has_finite_gradients(name, reverse):
    method = build(TRANSITION_CONFIGS[name], reverse=reverse, hybrid_lambda=0.1)
    torch.manual_seed(1)
    out = method.loss(Batch(data(64)))
    out.loss.backward()
    grads = [p.grad for p in method.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    assert out.per_example.shape == (64,) and torch.isfinite(out.per_example).all()
    assert set(out.metrics) == {"bound_nats_per_token", "ce_nats_per_token"}


def test_loss_reproduces_under_a_seed_and_covers_the_reconstruction_step():
    method = build("absorbing", schedule={"name": "loglinear", "eps": 0.0})
    losses = []
    for _ in range(2):
        torch.manual_seed(3)
        losses.append(method.loss(Batch(data())).per_example)
    torch.testing.assert_close(losses[0], losses[1])
    one_step = build("uniform", timesteps=1)  # every draw is the reconstruction term
    one_step.loss(Batch(data())).loss.backward()


def test_absorbing_network_sees_the_mask_id_but_never_predicts_it():
    seen = {}

    def factory(spec: NetSpec) -> nn.Module:
        seen["spec"] = spec
        return TinyNet(spec)

    config = from_dict(D3PMConfig, {"transition": "absorbing", "timesteps": T})
    build_d3pm(config, DataInfo((L,), kind="tokens", vocab_size=K), factory)
    assert seen["spec"] == NetSpec((L,), K, num_classes=0, input_vocab=K + 1)


@pytest.mark.parametrize("name", ["uniform", "absorbing"])
def test_argmax_decoding_is_deterministic(name):
    method = build(name, schedule={"name": "loglinear", "eps": 0.0}, sampler="argmax")
    first = method.sample(8, generator=torch.Generator().manual_seed(5)).x
    torch.manual_seed(123)  # the global generator must not matter
    again = method.sample(8, generator=torch.Generator().manual_seed(5)).x
    torch.testing.assert_close(first, again)
    if name == "absorbing":  # the prior is the all-mask state: nothing random is left
        other = method.sample(8, generator=torch.Generator().manual_seed(6)).x
        torch.testing.assert_close(first, other)
    ancestral = [
        method.sample(8, sampler="ancestral", generator=torch.Generator().manual_seed(s)).x for s in (5, 6)
    ]
    assert not torch.equal(*ancestral)


@pytest.mark.parametrize("sampler", ["ancestral", "argmax"])
@pytest.mark.parametrize("name", ["uniform", "absorbing", "gaussian"])
def test_infilling_never_changes_known_tokens(name, sampler):
    method = build(name)
    gen = torch.Generator().manual_seed(7)
    known = torch.randint(0, K, (32, L), generator=gen)
    mask = torch.rand(32, L, generator=gen) < 0.5
    for steps in (T, 3):
        out = method.sample(32, steps=steps, sampler=sampler, known=known, known_mask=mask, generator=gen)
        assert torch.equal(out.x[mask], known[mask])
        assert out.x.dtype == torch.long and ((out.x >= 0) & (out.x < K)).all()
        assert out.nfe == steps


def test_sampling_options_guidance_and_trajectory():
    method = build("uniform", num_classes=3, cond_drop_prob=0.1, temperature=0.7, top_p=0.9)
    cond = torch.tensor([0, 1, 2, 0])
    out = method.sample(4, steps=5, cond=cond, guidance_scale=2.0, return_trajectory=True)
    assert out.nfe == 10  # a guided evaluation counts as two
    times = [t for t, _ in out.trajectory]
    assert times[0] == 1.0 and times[-1] == 0.0 and times == sorted(times, reverse=True)
    assert torch.equal(out.trajectory[-1][1], out.x)
    method.loss(Batch(data(8), cond=torch.randint(0, 3, (8,)))).loss.backward()


def test_bad_inputs_raise_clear_errors():
    method = build("uniform")
    with pytest.raises(ValueError, match="integer token ids"):
        method.loss(Batch(data().float()))
    with pytest.raises(ValueError, match=r"allowed: 0 \.\. 4"):
        method.nll(Batch(data() + 1))
    with pytest.raises(ValueError, match=r"shape \(B, 6\)"):
        method.loss(Batch(data()[:, :4]))
    with pytest.raises(ValueError, match="steps"):
        method.sample(2, steps=T + 1)
    with pytest.raises(ValueError, match="unknown sampler"):
        method.sample(2, sampler="euler")
    with pytest.raises(ValueError, match="unconditional"):
        method.sample(2, cond=torch.zeros(2, dtype=torch.long))
    known = torch.full((2, L), K)
    with pytest.raises(ValueError, match="known"):
        method.sample(2, known=known, known_mask=torch.ones(2, L, dtype=torch.bool))
    method.sample(2, known=known, known_mask=torch.zeros(2, L, dtype=torch.bool))  # unused values are free
    config = D3PMConfig(timesteps=T)
    wide = D3PM(
        lambda x, t, cond=None: torch.zeros(*x.shape, K + 1), method.transition, config, event_shape=(L,)
    )
    with pytest.raises(ValueError, match="logits of shape"):
        wide.loss(Batch(data()))
    nan = D3PM(
        lambda x, t, cond=None: torch.full((*x.shape, K), torch.nan),
        method.transition,
        config,
        event_shape=(L,),
    )
    with pytest.raises(FloatingPointError, match="NaN"):
        nan.sample(2)


def test_config_parsing_and_registry():
    assert METHODS.get("d3pm") is build_d3pm
    options = {
        "transition": {"name": "marginal", "probs": [1, 2]},
        "schedule": {"name": "loglinear", "eps": 0.0},
    }
    config = from_dict(D3PMConfig, options, "method")
    assert from_dict(D3PMConfig, to_dict(config), "method") == config
    with pytest.raises(ConfigError, match="allowed: absorbing, dense, gaussian, marginal, uniform"):
        from_dict(D3PMConfig, {"transition": "masked"}, "method")
    with pytest.raises(ConfigError, match=r"method\.transition\.probs"):
        from_dict(D3PMConfig, {"transition": "marginal"}, "method")
    with pytest.raises(ConfigError, match="sample_steps"):
        from_dict(D3PMConfig, {"timesteps": 10, "sample_steps": 20}, "method")
    with pytest.raises(ValueError, match="vocab_size 5"):
        build({"name": "marginal", "probs": [1, 2]})
    with pytest.raises(ValueError, match="token data"):
        build_d3pm(D3PMConfig(), DataInfo((2,)), lambda spec: TinyNet(spec))


def test_dense_transition_from_a_safetensors_file(tmp_path):
    rate = torch.rand(K, K)
    rate = rate - torch.diag(rate.sum(dim=1))
    path = tmp_path / "rate.safetensors"
    save_file({"matrix": rate}, str(path))
    method = build({"name": "dense", "path": str(path)})
    method.loss(Batch(data())).loss.backward()
    step = torch.full((K, K), 0.05) + 0.75 * torch.eye(K)
    save_file({"matrix": step}, str(tmp_path / "step.safetensors"))
    method = build({"name": "dense", "path": str(tmp_path / "step.safetensors"), "kind": "steps"})
    assert method.sample(3, steps=4).x.shape == (3, L)
    with pytest.raises(ValueError, match="not found"):
        build({"name": "dense", "path": str(tmp_path / "missing.safetensors")})


def test_continuous_time_methods_get_a_clear_error_from_grid_transitions():
    spec = from_dict(D3PMConfig, {"transition": "gaussian"}).transition
    with pytest.raises(ValueError, match="discrete-time"):
        build_transition(spec, vocab_size=K, schedule=D3PMConfig().schedule, timesteps=0)


class _Offsets(Batch):
    """A batch whose per-example offset draw (``rand()`` with no shape) returns given values."""

    offsets: torch.Tensor | None = None

    def rand(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        if not shape and self.offsets is not None:
            return self.offsets.to(dtype)
        return super().rand(*shape, dtype=dtype)


def test_nll_time_samples_stratify_the_step_sum(monkeypatch):
    """With k = nll_time_samples < T - 1 each example's diffusion term is (T - 1)/k times k
    stratified steps, one per stratum of the i = 2..T sum. With a step term f(i) = i^2 (the KL
    replaced by a known function of the step) and T - 1 = 9, k = 3, the offsets 1/6, 1/2, 5/6
    pick each step of every stratum once, so their mean is the exact sum; every step is summed
    when k = 0. Fails if the (T - 1)/k weight, the first step 2 or the stratification is wrong."""
    exact_sum = float(sum(i * i for i in range(2, T + 1)))
    for k, offsets in [(3, [1 / 6, 1 / 2, 5 / 6]), (0, [0.1, 0.4, 0.7])]:
        method = build("uniform", nll_time_samples=k)
        seen: list[torch.Tensor] = []

        def step_kl(x0, x_t, s, t, cond=None, seen=seen):
            i = torch.round(t * T)
            assert torch.allclose(s, (i - 1) / T)
            seen.append(i)
            return i.to(torch.float64) ** 2

        monkeypatch.setattr(method, "step_kl", step_kl)
        batch = _Offsets(data(3))
        batch.offsets = torch.tensor(offsets, dtype=torch.float64)
        out = method.nll(batch)
        assert torch.equal(out.terms["reconstruction"], torch.ones(3, dtype=torch.float64))
        if k == 0:
            assert len(seen) == T and torch.equal(out.terms["diffusion"], torch.full((3,), exact_sum))
            continue
        steps = torch.stack(seen[1:], dim=1)  # (B, k): example b's steps, one per stratum
        assert steps.tolist() == [[2, 5, 8], [3, 6, 9], [4, 7, 10]]
        assert out.terms["diffusion"].mean().item() == pytest.approx(exact_sum, rel=1e-12)


def test_nll_time_samples_is_validated():
    with pytest.raises(ValueError, match="nll_time_samples"):
        D3PMConfig(nll_time_samples=-1)
