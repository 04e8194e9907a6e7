"""Masked diffusion with a small transformer: losses and gradients at extreme times, the reverse step
against the transition's posterior, caching, infilling, semi-autoregressive windows, options,
validation and configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from discodiff.base import Batch
from discodiff.build import build_run
from discodiff.categorical import AbsorbingTransition, MaskedConfig, MaskedDiffusion, UniformTransition
from discodiff.categorical.masked_process import elbo_weight, masked_reverse_logits, unmask_log_probs
from discodiff.config import ConfigError, from_dict
from discodiff.nets import NetSpec
from discodiff.nets.transformer import Transformer, TransformerConfig
from discodiff.runconfig import load_config, parse_config
from discodiff.schedules import CosineSchedule, GeometricSchedule, LogLinearSchedule

K, L = 5, 12
SMALL = TransformerConfig(width=32, depth=2, heads=4, cond_dim=16, time_dim=16)
CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "shakespeare"
SAMPLERS = MaskedDiffusion.samplers


def make(num_classes: int = 0, schedule=None, **options) -> MaskedDiffusion:
    """A masked diffusion model whose transformer has random (not zero) output weights."""
    torch.manual_seed(0)
    transition = AbsorbingTransition(schedule or LogLinearSchedule(eps=0.0), K)
    net = Transformer(NetSpec((L,), K, num_classes=num_classes, input_vocab=K + 1), SMALL)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.3)
    return MaskedDiffusion(
        net, transition, MaskedConfig(**options), event_shape=(L,), num_classes=num_classes
    )


def data(n: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, K, (n, L), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
@pytest.mark.parametrize("t", [1e-6, 0.5, 1 - 1e-6])
def test_loss_and_gradients_are_finite_at_extreme_times(t, precision):
    method = make(time_conditioning=True, sampler="ancestral")
    x0 = data(8)
    u = torch.rand(8, L, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    u[:, ::2, 0] = 1 - 1e-12  # half the tokens masked even at t = 1e-6
    times = torch.full((8,), t, dtype=torch.float64)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bfloat16"):
        term = method.diffusion_term(x0, times, u)
        total = (method.prior_kl(x0).to(term.dtype) + term).mean()
    total.backward()
    assert torch.isfinite(term).all() and (term > 0).all()
    grads = [p.grad for p in method.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bfloat16"):
        method.loss(Batch(x0)).loss.backward()


@pytest.mark.parametrize(
    "schedule",
    [LogLinearSchedule(eps=0.0), LogLinearSchedule(), CosineSchedule(), GeometricSchedule(1e-3, 20.0)],
)
def test_reverse_step_is_the_transitions_posterior(schedule):
    """The samplers' closed-form step of a masked token (``masked_reverse_logits`` with
    ``unmask_log_probs``) is the absorbing transition's posterior averaged over p(x0); an unmasked
    token's posterior is a point mass on itself (the samplers never change it)."""
    method = make(schedule=schedule)
    x_t = torch.where(torch.rand(6, L, generator=torch.Generator().manual_seed(2)) < 0.5, data(6), K)
    log_p0 = torch.log_softmax(torch.randn(6, L, K, dtype=torch.float64), dim=-1)
    masked = x_t == K
    for s, t in [(0.0, 1.0), (0.3, 0.31), (0.0, 0.2), (0.5, 1.0)]:
        s_, t_ = torch.full((6,), s, dtype=torch.float64), torch.full((6,), t, dtype=torch.float64)
        move, stay = (c[:, None, None] for c in unmask_log_probs(method.schedule, s_, t_))
        ours = masked_reverse_logits(log_p0, move, stay)
        brute = method.transition.log_posterior_expected(x_t, log_p0, s_, t_)
        torch.testing.assert_close(ours.exp()[masked], brute.exp()[masked], atol=1e-12, rtol=1e-9)
        # an unmasked token at t = 1 is unreachable when alpha_1 = 0: the posterior is undefined there
        if bool(method.transition.log_keep_move(0.0, t, x_t)[0][0] > -torch.inf):
            copy = torch.nn.functional.one_hot(x_t, K + 1).double()
            torch.testing.assert_close(brute.exp()[~masked], copy[~masked], atol=1e-12, rtol=0)


def test_elbo_weights_continuous_time_is_the_limit_of_T_steps():
    t = torch.tensor([0.05, 0.3, 0.7, 0.95], dtype=torch.float64)
    torch.testing.assert_close(elbo_weight(LogLinearSchedule(eps=0.0), t, 0), 1 / t)  # MDLM's 1/t
    for schedule in [CosineSchedule(), LogLinearSchedule(), GeometricSchedule(1e-3, 20.0)]:
        continuous = elbo_weight(schedule, t, 0)
        T = 2**20  # on the grid: t * T is an integer for these t up to rounding
        grid = torch.round(t * T) / T
        torch.testing.assert_close(elbo_weight(schedule, grid, T), continuous, rtol=1e-4, atol=0)
    move, stay = unmask_log_probs(LogLinearSchedule(eps=0.0), t - 0.05, t)
    torch.testing.assert_close(move.exp() + stay.exp(), torch.ones_like(t))
    torch.testing.assert_close(move.exp(), 0.05 / t)  # the log-linear special case 1 - s/t


def test_caching_gives_identical_samples_with_fewer_network_calls():
    method = make()
    plain = method.sample(6, steps=64, sampler="ancestral", generator=torch.Generator().manual_seed(3))
    cached = method.sample(6, steps=64, sampler="caching", generator=torch.Generator().manual_seed(3))
    assert torch.equal(plain.x, cached.x)
    assert plain.nfe == 64 and cached.nfe <= L + 1  # at most one evaluation per unmasking event
    with pytest.raises(ValueError, match="time_conditioning"):
        make(time_conditioning=True, sampler="ancestral").sample(2, sampler="caching")


def _masks() -> dict[str, torch.Tensor]:
    prefix = torch.zeros(8, L, dtype=torch.bool)
    prefix[:, :5] = True
    random = torch.rand(8, L, generator=torch.Generator().manual_seed(4)) < 0.4
    return {"prefix": prefix, "suffix": prefix.flip(1), "random": random}


@pytest.mark.parametrize("kind", ["prefix", "suffix", "random"])
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_infilling_never_changes_known_tokens(sampler, kind):
    mask = _masks()[kind]
    known = data(8, seed=5)
    for method, steps in [(make(), 7), (make(schedule=LogLinearSchedule(), timesteps=10), 10)]:
        out = method.sample(8, steps=steps, sampler=sampler, known=known, known_mask=mask)
        assert torch.equal(out.x[mask], known[mask])
        assert out.x.dtype == torch.long and ((out.x >= 0) & (out.x < K)).all()


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_semi_autoregressive_generation_beyond_the_training_length(sampler):
    method = make(block_size=4)
    n, length = 3, 2 * L + 5
    known = torch.randint(0, K, (n, length), generator=torch.Generator().manual_seed(6))
    mask = torch.zeros(n, length, dtype=torch.bool)
    mask[:, :3] = True  # a prompt
    mask[:, L + 2 : L + 6] = True  # tokens in later windows
    out = method.sample(
        (n, length), steps=5, sampler=sampler, known=known, known_mask=mask, return_trajectory=True
    )
    assert out.x.shape == (n, length) and ((out.x >= 0) & (out.x < K)).all()
    assert torch.equal(out.x[mask], known[mask])
    windows = 1 + -(-(length - L) // 4)  # the first window, then 4 new tokens per window
    assert out.nfe <= windows * 5 and (sampler == "caching" or out.nfe == windows * 5)
    assert torch.equal(out.trajectory[-1][1][:, :length], out.x)
    short = method.sample((n, L - 4), steps=5, sampler=sampler)
    assert short.x.shape == (n, L - 4)


def test_temperature_top_p_and_argmax():
    method = make(sampler="ancestral", top_p=1e-9)  # the nucleus keeps only the most likely token
    greedy = method.sample(4, steps=6, generator=torch.Generator().manual_seed(7)).x
    argmax = make().sample(4, steps=6, sampler="argmax", generator=torch.Generator().manual_seed(7)).x
    assert torch.equal(greedy, argmax)
    hot = make(temperature=5.0).sample(64, steps=6, generator=torch.Generator().manual_seed(7)).x
    cold = make(temperature=0.2).sample(64, steps=6, generator=torch.Generator().manual_seed(7)).x
    distinct = [len(torch.unique(x.flatten())) for x in (hot, cold)]
    assert distinct[0] >= distinct[1]
    for sampler in SAMPLERS:  # every sampler honours the generator
        a = method.sample(4, steps=6, sampler=sampler, generator=torch.Generator().manual_seed(8)).x
        b = method.sample(4, steps=6, sampler=sampler, generator=torch.Generator().manual_seed(8)).x
        assert torch.equal(a, b)


def test_guidance_labels_and_trajectory():
    method = make(num_classes=2, cond_drop_prob=0.2)
    cond = torch.tensor([0, 1, 1])
    out = method.sample(
        3, steps=4, sampler="ancestral", cond=cond, guidance_scale=2.0, return_trajectory=True
    )
    assert out.nfe == 8  # a guided evaluation counts as two
    times = [t for t, _ in out.trajectory]
    assert times[0] == 1.0 and times[-1] == 0.0 and times == sorted(times, reverse=True)
    assert torch.equal(out.trajectory[-1][1], out.x) and (out.trajectory[0][1] == K).all()
    method.loss(Batch(data(8), cond=torch.randint(0, 2, (8,)))).loss.backward()


def test_time_conditioning_switch():
    seen = []

    def net(x_t, t, cond=None):
        seen.append(t.clone())
        return torch.zeros(*x_t.shape, K)

    for flag in (False, True):
        config = MaskedConfig(time_conditioning=flag, sampler="ancestral")
        method = MaskedDiffusion(
            net, AbsorbingTransition(LogLinearSchedule(eps=0.0), K), config, event_shape=(L,)
        )
        method.sample(2, steps=2)
        assert [float(t[0]) for t in seen[-2:]] == ([1.0, 0.5] if flag else [0.0, 0.0])


def test_data_parallel_rows_reproduce_the_global_batch():
    method = make()
    x = data(8)
    torch.manual_seed(9)
    whole = method.loss(Batch(x)).per_example
    parts = []
    for offset in (0, 4):
        torch.manual_seed(9)
        parts.append(method.loss(Batch(x[offset : offset + 4], rows=(offset, 8))).per_example)
    torch.testing.assert_close(torch.cat(parts), whole)


def test_bad_inputs_and_configs_raise_clear_errors():
    method = make()
    with pytest.raises(ValueError, match="integer token ids"):
        method.loss(Batch(data().float()))
    with pytest.raises(ValueError, match=r"allowed: 0 .. 4"):
        method.loss(Batch(torch.full((2, L), K)))
    with pytest.raises(ValueError, match="unconditional"):
        method.sample(2, cond=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="known"):
        method.sample(2, known=torch.full((2, L), K), known_mask=torch.ones(2, L, dtype=torch.bool))
    with pytest.raises(ValueError, match="sampler"):
        method.sample(2, sampler="euler")
    with pytest.raises(ValueError, match="steps"):
        make(timesteps=8).sample(2, steps=9)
    with pytest.raises(ValueError, match="AbsorbingTransition"):
        MaskedDiffusion(
            lambda *a: None, UniformTransition(CosineSchedule(), K), MaskedConfig(), event_shape=(L,)
        )
    for bad, match in [
        ({"timesteps": -1}, "timesteps"),
        ({"timesteps": 4, "sample_steps": 8}, "sample_steps"),
        ({"block_size": 0}, "block_size"),
        ({"nll_time_samples": 0}, "nll_time_samples"),
        ({"top_p": 0.0}, "top_p"),
        ({"sampler": "tau_leaping"}, "sampler"),
        ({"time_conditioning": True}, "caching"),
    ]:
        with pytest.raises(ConfigError, match=match):
            from_dict(MaskedConfig, bad, "method")


TEXT_RUN = {
    "data": {"name": "text", "seq_len": 32},
    "method": {"name": "mdlm", "nll_time_samples": 2, "sample_steps": 8},
    "net": {"name": "transformer", "width": 32, "depth": 1, "heads": 2},
}


def test_built_from_a_config_on_text():
    data, method = build_run(parse_config(TEXT_RUN))
    assert isinstance(method, MaskedDiffusion) and method.mask_id == len(data.vocab)
    x, _ = data.split("val")
    method.loss(Batch(x[:4])).loss.backward()
    out = method.nll(Batch(x[:4]))
    assert out.nll.shape == (4,) and (out.nll > 0).all() and out.num_dims.tolist() == [32.0] * 4
    known = x[:2]
    mask = torch.ones_like(known, dtype=torch.bool)
    mask[:, 8:24] = False
    filled = method.sample(tuple(known.shape), known=known, known_mask=mask).x
    assert torch.equal(filled[mask], known[mask])


@pytest.mark.parametrize("name", ["mdlm.yaml", "mdlm_demo.yaml"])
def test_shipped_configs_parse_and_build(name):
    config = load_config(CONFIGS / name)
    _, method = build_run(config)
    assert isinstance(method, MaskedDiffusion)
