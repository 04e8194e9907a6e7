"""Continuous-time methods (ctmc, udlm, sedd) with a small trainable network: finite losses and
gradients at extreme times in float32 and bfloat16, infilling, sampling options, data-parallel
reproducibility, validation, configuration and the builders."""

from __future__ import annotations

import pytest
import torch

from discodiff.base import METHODS, Batch
from discodiff.categorical import (
    CTMC,
    SEDD,
    CTMCConfig,
    DiscretizedGaussianTransition,
    SEDDConfig,
    UDLMConfig,
)
from discodiff.categorical.ctmc import build_ctmc, build_udlm
from discodiff.categorical.sedd import build_sedd
from discodiff.config import ConfigError, from_dict, to_dict
from discodiff.data import DataInfo
from discodiff.schedules import CosineSchedule

from .test_d3pm import TinyNet

K, L = 5, 6

BUILDERS = {
    "ctmc": (CTMCConfig, build_ctmc),
    "udlm": (UDLMConfig, build_udlm),
    "sedd": (SEDDConfig, build_sedd),
}

METHOD_OPTIONS = {
    "ctmc-uniform": ("ctmc", {"transition": "uniform"}),
    "ctmc-absorbing": ("ctmc", {"transition": "absorbing", "schedule": {"name": "loglinear", "eps": 0.0}}),
    "ctmc-marginal-d3pm": (
        "ctmc",
        {"transition": {"name": "marginal", "probs": [1, 2, 3, 4, 5]}, "reverse": "d3pm"},
    ),
    "udlm": ("udlm", {}),
    "sedd-absorbing": (
        "sedd",
        {"transition": "absorbing", "scale_by_sigma": True, "schedule": {"name": "loglinear", "eps": 0.0}},
    ),
    "sedd-uniform": ("sedd", {"transition": "uniform", "schedule": {"name": "geometric", "sigma_max": 20.0}}),
}


def build(name: str, *, num_classes: int = 0, **options):
    kind, base = METHOD_OPTIONS[name]
    config_cls, builder = BUILDERS[kind]
    config = from_dict(config_cls, {**base, **options}, "method")
    torch.manual_seed(0)
    return builder(config, DataInfo((L,), kind="tokens", vocab_size=K, num_classes=num_classes), TinyNet)


def build_transition_for_grid() -> DiscretizedGaussianTransition:
    return DiscretizedGaussianTransition(CosineSchedule(), K, 10)


def data(n: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, K, (n, L), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("t", [1e-6, 0.5, 1 - 1e-6])
@pytest.mark.parametrize("name", list(METHOD_OPTIONS))
def test_losses_and_gradients_are_finite_at_extreme_times(name, t, dtype):
    method = build(name)
    x0 = data(64)
    times = torch.full((64,), t, dtype=torch.float64)
    x_t = method.transition.sample_marginal(x0, times, torch.rand(64, L, 2, dtype=torch.float64))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        values = method.elbo_integrand(x0, x_t, times) + method.transition.prior_kl(x0)
    assert torch.isfinite(values).all() and (values >= -1e-3).all()
    values.mean().backward()
    grads = [p.grad for p in method.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", list(METHOD_OPTIONS))
def test_training_loss_under_bf16_autocast(name):
    method = build(name)
    torch.manual_seed(1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = method.loss(Batch(data(32)))
    out.loss.backward()
    assert torch.isfinite(out.per_example).all() and out.per_example.shape == (32,)
    assert set(out.metrics) == {"bound_nats_per_token"}
    assert all(torch.isfinite(p.grad).all() for p in method.parameters() if p.grad is not None)


def test_data_parallel_ranks_reproduce_one_process():
    """Times are stratified over the global batch: two half batches with their rows give the same
    per-example losses as the whole batch."""
    method = build("ctmc-uniform")
    x = data(8)
    torch.manual_seed(4)
    whole = method.loss(Batch(x)).per_example
    halves = []
    for offset in (0, 4):
        torch.manual_seed(4)
        halves.append(method.loss(Batch(x[offset : offset + 4], rows=(offset, 8))).per_example)
    torch.testing.assert_close(torch.cat(halves), whole)


SAMPLERS = ["analytic", "euler", "tau_leaping", "pc"]


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("name", list(METHOD_OPTIONS))
def test_infilling_never_changes_known_tokens(name, sampler):
    method = build(name)
    gen = torch.Generator().manual_seed(7)
    known = torch.randint(0, K, (32, L), generator=gen)
    mask = torch.rand(32, L, generator=gen) < 0.5
    out = method.sample(
        32, steps=4, sampler=sampler, known=known, known_mask=mask, generator=gen, return_trajectory=True
    )
    assert torch.equal(out.x[mask], known[mask])
    assert all(torch.equal(x[mask], known[mask]) for _, x in out.trajectory)
    assert out.x.dtype == torch.long and ((out.x >= 0) & (out.x < K)).all()
    assert out.nfe == (4 + 3 if sampler == "pc" else 4)  # pc: one corrector call per inner time


def test_ordinal_tau_leaping_and_multi_jump_options():
    for options in ({"ordinal": True}, {"multi_jump": "keep_one"}):
        method = build("ctmc-uniform", sampler="tau_leaping", **options)
        x = method.sample(16, steps=3, generator=torch.Generator().manual_seed(0)).x
        assert ((x >= 0) & (x < K)).all()
    with pytest.raises(ValueError, match="ordinal"):
        build("ctmc-absorbing", ordinal=True)


def test_sampling_is_reproducible_and_guidance_counts_two_evaluations():
    method = build("sedd-uniform", num_classes=3, cond_drop_prob=0.1)
    cond = torch.tensor([0, 1, 2, 0])
    runs = [
        method.sample(4, steps=3, cond=cond, guidance_scale=2.0, generator=torch.Generator().manual_seed(9))
        for _ in range(2)
    ]
    assert torch.equal(runs[0].x, runs[1].x) and runs[0].nfe == 6
    out = method.sample(4, steps=5, return_trajectory=True)
    times = [t for t, _ in out.trajectory]
    assert times[0] == 1.0 and times[-1] == 0.0 and times == sorted(times, reverse=True)
    assert torch.equal(out.trajectory[-1][1], out.x)
    method.loss(Batch(data(8), cond=torch.randint(0, 3, (8,)))).loss.backward()


def test_nll_reports_prior_and_diffusion_terms():
    method = build("udlm", nll_time_samples=4)
    torch.manual_seed(0)
    out = method.nll(Batch(data(8)))
    assert set(out.terms) == {"prior", "diffusion"} and out.nll.dtype == torch.float64
    torch.testing.assert_close(out.nll, out.terms["prior"] + out.terms["diffusion"])
    assert (out.num_dims == L).all() and (out.nll > 0).all()


def test_bad_inputs_raise_clear_errors():
    method = build("ctmc-uniform")
    with pytest.raises(ValueError, match="integer token ids"):
        method.loss(Batch(data().float()))
    with pytest.raises(ValueError, match=r"allowed: 0 \.\. 4"):
        method.nll(Batch(data() + 1))
    with pytest.raises(ValueError, match="unknown sampler"):
        method.sample(2, sampler="ancestral")
    with pytest.raises(ValueError, match="steps"):
        method.sample(2, steps=-1)
    with pytest.raises(ValueError, match="unconditional"):
        method.sample(2, cond=torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="known"):
        method.sample(2, known=torch.full((2, L), K), known_mask=torch.ones(2, L, dtype=torch.bool))
    sedd = build("sedd-absorbing")
    nan = SEDD(
        lambda x, t, cond=None: torch.full((*x.shape, K), torch.nan),
        sedd.transition,
        sedd.options,
        event_shape=(L,),
    )
    with pytest.raises(FloatingPointError, match="NaN"):
        nan.sample(2, steps=2)
    wide = CTMC(
        lambda x, t, cond=None: torch.zeros(*x.shape, K + 1),
        method.transition,
        method.options,
        event_shape=(L,),
    )
    with pytest.raises(ValueError, match="logits of shape"):
        wide.loss(Batch(data()))
    with pytest.raises(ValueError, match="scale_by_sigma"):
        SEDD(TinyNet, build("sedd-uniform").transition, sedd.options, scale_by_sigma=True, event_shape=(L,))
    with pytest.raises(ValueError, match="CTMC transition"):
        CTMC(TinyNet, build_transition_for_grid(), method.options, event_shape=(L,))


def test_config_parsing_errors_and_registry():
    assert METHODS.get("ctmc") is build_ctmc and METHODS.get("udlm") is build_udlm
    assert METHODS.get("sedd") is build_sedd
    for cls, options in [
        (CTMCConfig, {"transition": "absorbing", "sampler": "pc", "reverse": "d3pm"}),
        (SEDDConfig, {"transition": "uniform", "schedule": "geometric", "multi_jump": "keep_one"}),
        (UDLMConfig, {"nll_time_samples": 16}),
    ]:
        config = from_dict(cls, options, "method")
        assert from_dict(cls, to_dict(config), "method") == config
    with pytest.raises(ConfigError, match=r"analytic.*euler.*tau_leaping.*pc"):
        from_dict(CTMCConfig, {"sampler": "ancestral"}, "method")
    with pytest.raises(ConfigError, match="multi_jump"):
        from_dict(CTMCConfig, {"multi_jump": "sum"}, "method")
    with pytest.raises(ConfigError, match="nll_time_samples"):
        from_dict(UDLMConfig, {"nll_time_samples": 0}, "method")
    with pytest.raises(ConfigError, match="absorbing, uniform"):
        from_dict(SEDDConfig, {"transition": {"name": "marginal", "probs": [1, 2]}}, "method")
    with pytest.raises(ConfigError, match="scale_by_sigma"):
        from_dict(SEDDConfig, {"transition": "uniform", "scale_by_sigma": True}, "method")
    with pytest.raises(ValueError, match="discrete-time"):
        build_ctmc(
            from_dict(CTMCConfig, {"transition": "gaussian"}), DataInfo((L,), "tokens", vocab_size=K), TinyNet
        )
    with pytest.raises(ValueError, match="token data"):
        build_sedd(SEDDConfig(), DataInfo((2,)), TinyNet)
