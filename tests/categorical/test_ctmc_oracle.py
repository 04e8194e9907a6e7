"""Continuous-time methods (CTMC, UDLM, SEDD) with exact networks on the enumerable distribution
of length-3 sequences over K = 3 ids (data entropy H = 2.5176 nats).

Measured with these settings (quadrature in t, exact enumeration over x_t):

- With the exact ratios the continuous-time ELBO is tight: bound - H equals KL(q_1 || p_1), the
  prior mismatch (0 for absorbing with alpha_bar(1) = 0, 1.3e-7 for uniform log-linear), to
  < 1e-7 nats for every transition and schedule here, the geometric one (alpha_bar(0) < 1)
  included, and for SEDD's log-score network with and without scale_by_sigma.
- With a perturbed (non-exact) network, D3PM's bound over T steps approaches the continuous-time
  bound like 1/T (gaps 0.016 / 0.0040 / 0.0010 at T = 64 / 256 / 1024 for uniform); Richardson
  extrapolation of T = 128 and 512 matches it to < 2e-6.
- Sampler output vs the table (exact, by enumeration over S^3 states), total variation at
  16 / 64 steps: analytic 0.039 / 0.0099 (uniform), 0.031 / 0.0084 (absorbing); Euler about the
  same; tau-leaping with rejection 0.069 / 0.020 (uniform); PC 0.065 / 0.019 (uniform).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch

from discodiff.base import Batch
from discodiff.categorical import (
    CTMC,
    D3PM,
    SEDD,
    AbsorbingTransition,
    ContinuousTimeOptions,
    D3PMConfig,
    MarginalTransition,
    RateMatrixTransition,
    UniformTransition,
)
from discodiff.categorical.ratios import log_ratios_given_x0, score_entropy
from discodiff.schedules import CosineSchedule, GeometricSchedule, LogLinearSchedule

from .ctmc_oracle import (
    exact_ct_bound,
    exact_sampler_distribution,
    posterior_net,
    prior_mismatch,
    score_net,
)
from .sequence_oracle import K, SequenceOracle, all_sequences, exact_bound, sequence_index

ORACLE = SequenceOracle()
H = ORACLE.entropy()
RATE = torch.tensor([[-1.0, 0.7, 0.3], [0.4, -0.9, 0.5], [0.2, 0.6, -0.8]])
CHI2_LEVEL = 1e-3  # reject a sampler whose draws are this unlikely under its exact distribution
TIGHT = 1e-6  # allowed |bound - H - KL(q_1 || p_1)| with the exact ratios (quadrature, 96 nodes)

TRANSITIONS = {
    "uniform": lambda: UniformTransition(LogLinearSchedule(), K),
    "uniform_cosine": lambda: UniformTransition(CosineSchedule(), K),
    "uniform_geometric": lambda: UniformTransition(GeometricSchedule(1e-4, 20.0), K),
    "absorbing": lambda: AbsorbingTransition(LogLinearSchedule(eps=0.0), K),
    "absorbing_geometric": lambda: AbsorbingTransition(GeometricSchedule(1e-4, 20.0), K),
    "marginal": lambda: MarginalTransition(LogLinearSchedule(), ORACLE.token_marginal()),
    "rate": lambda: RateMatrixTransition(RATE, GeometricSchedule(0.01, 30.0)),
}


def ctmc(name: str, *, form: str = "average", noise: float = 0.0, **options) -> CTMC:
    tr = TRANSITIONS[name]()
    net = posterior_net(ORACLE, tr, form=form, noise=noise)
    return CTMC(net, tr, ContinuousTimeOptions(**options), reverse=form, event_shape=(3,))


def sedd(name: str, *, scale_by_sigma: bool = False, **options) -> SEDD:
    tr = TRANSITIONS[name]()
    net = score_net(ORACLE, tr, scale_by_sigma=scale_by_sigma)
    return SEDD(net, tr, ContinuousTimeOptions(**options), scale_by_sigma=scale_by_sigma, event_shape=(3,))


METHODS = {
    **{f"ctmc-{name}": (lambda name=name: ctmc(name)) for name in TRANSITIONS},
    "udlm": lambda: ctmc("uniform", form="d3pm"),
    "sedd-absorbing": lambda: sedd("absorbing"),
    "sedd-absorbing-scaled": lambda: sedd("absorbing_geometric", scale_by_sigma=True),
    "sedd-uniform-geometric": lambda: sedd("uniform_geometric"),
}


@pytest.mark.parametrize("name", list(METHODS))
def test_bound_with_exact_ratios_is_the_entropy_plus_the_prior_mismatch(name):
    method = METHODS[name]()
    bound = exact_ct_bound(method, ORACLE)
    mismatch = prior_mismatch(method.transition, ORACLE)
    assert bound >= H - TIGHT
    assert abs(bound - H - mismatch) < TIGHT, f"{name}: bound - H = {bound - H:.3g}, KL = {mismatch:.3g}"


@pytest.mark.parametrize(
    ("name", "form"),
    [("uniform", "average"), ("uniform", "d3pm"), ("absorbing", "average"), ("marginal", "d3pm")],
)
def test_continuous_time_bound_is_the_limit_of_the_discrete_time_bound(name, form):
    method = ctmc(name, form=form, noise=0.3)
    continuous = exact_ct_bound(method, ORACLE)
    discrete = [
        exact_bound(
            D3PM(method.net, method.transition, D3PMConfig(timesteps=T, reverse=form), event_shape=(3,)),
            ORACLE,
        )[0]
        for T in (128, 512)
    ]
    gaps = [d - continuous for d in discrete]
    assert 3.5 < gaps[0] / gaps[1] < 4.5, gaps  # first order in 1/T
    assert abs((4 * discrete[1] - discrete[0]) / 3 - continuous) < 2e-6


def _udlm_token_loss(x0: torch.Tensor, z: torch.Tensor, log_p: torch.Tensor, alpha, dalpha) -> torch.Tensor:
    """PITFALLS' per-token UDLM / DUO loss, written out: x_bar = N alpha onehot(x0) + (1 - alpha),
    x_bar_theta = N alpha p + (1 - alpha), z the current token."""
    n = log_p.shape[-1]
    a, da = alpha[:, None, None], dalpha[:, None]
    x_bar = n * a * torch.nn.functional.one_hot(x0, n) + (1 - a)
    x_theta = n * a * log_p.exp() + (1 - a)
    xz, xtz = x_bar.gather(-1, z[..., None]), x_theta.gather(-1, z[..., None])
    logs = torch.log(xtz * x_bar / (x_theta * xz))
    bracket = n / xz[..., 0] - n / xtz[..., 0] - (x_bar / xz * logs).sum(-1)
    return da / (n * a[..., 0]) * bracket


def test_udlm_closed_form_is_the_ctmc_bound_with_joint_ratios():
    k, length, b = 5, 4, 64
    gen = torch.Generator().manual_seed(0)
    table = torch.randn(length, k, k, generator=gen, dtype=torch.float64)

    def net(x_t, t, cond=None):
        return table[torch.arange(length), x_t] * (1 + t[:, None, None].double())

    schedule = LogLinearSchedule()
    tr = UniformTransition(schedule, k)
    method = CTMC(net, tr, ContinuousTimeOptions(), reverse="d3pm", event_shape=(length,))
    x0 = torch.randint(0, k, (b, length), generator=gen)
    t = torch.rand(b, generator=gen).double()  # float32 values: the net sees float32 times
    z = tr.sample_marginal(x0, t, torch.rand(b, length, 2, generator=gen, dtype=torch.float64))
    alpha = torch.exp(-(schedule.sigma_bar(t) - schedule.sigma_bar(torch.zeros(1, dtype=torch.float64))))
    reference = _udlm_token_loss(
        x0, z, torch.log_softmax(net(z, t), -1), alpha, -alpha * schedule.dsigma_bar(t)
    )
    torch.testing.assert_close(method.elbo_integrand(x0, z, t), reference.sum(1), rtol=1e-10, atol=1e-12)


def test_absorbing_score_entropy_is_sedds_formula_with_the_constant():
    """Sum_{y != mask} e^{s_y} - a s_{x0} + a (log a - 1), a = 1 / (e^sigma - 1), on masked tokens."""
    tr = AbsorbingTransition(LogLinearSchedule(), K)
    gen = torch.Generator().manual_seed(1)
    n = 200
    x0 = torch.randint(0, K, (n, 1), generator=gen)
    x_t = torch.full_like(x0, tr.mask_id)
    t = torch.rand(n, generator=gen, dtype=torch.float64)
    scores = torch.randn(n, 1, K, generator=gen, dtype=torch.float64)
    log_ratio = torch.cat([scores, torch.zeros(n, 1, 1, dtype=torch.float64)], -1)
    true = log_ratios_given_x0(tr, x_t, x0, t, dtype=torch.float64)
    weights = tr.jump_weights(x_t, t, dtype=torch.float64)
    sigma = tr.schedule.sigma_bar(t) - tr.schedule.sigma_bar(torch.zeros(1, dtype=torch.float64))
    a = 1 / torch.expm1(sigma)
    expected = scores.exp().sum(-1)[:, 0] - a * scores[:, 0].gather(-1, x0)[:, 0] + a * (a.log() - 1)
    got = score_entropy(log_ratio, true, weights)[:, 0]
    torch.testing.assert_close(got, tr.schedule.dsigma_bar(t) * expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    ("name", "scale"), [("absorbing", False), ("absorbing_geometric", True), ("uniform", False)]
)
def test_sedd_loss_is_zero_at_the_true_ratios(name, scale):
    """A network that outputs the data-conditioned ratios q(y|x0)/q(x|x0) has zero score entropy."""
    tr = TRANSITIONS[name]()
    gen = torch.Generator().manual_seed(2)
    x0 = ORACLE.sample(512, gen)
    t = torch.rand(512, generator=gen, dtype=torch.float64).float().double()  # the net sees float32
    x_t = tr.sample_marginal(x0, t, torch.rand(512, 3, 2, generator=gen, dtype=torch.float64))

    def net(x, tt, cond=None):
        out = log_ratios_given_x0(tr, x, x0, tt.double(), dtype=torch.float64)[..., :K]
        if scale:
            log_keep, log_move = tr.log_keep_move(0.0, tt.double(), x)
            out = out + (log_move - log_keep)[:, None, None] + math.log(K)
        return out

    method = SEDD(net, tr, ContinuousTimeOptions(), scale_by_sigma=scale, event_shape=(3,))
    values = method.elbo_integrand(x0, x_t, t)
    scale_of_terms = tr.schedule.dsigma_bar(t) / torch.expm1(
        tr.schedule.sigma_bar(t) - tr.schedule.sigma_bar(0 * t)
    )
    assert (values.abs() <= 1e-9 * (1 + scale_of_terms)).all(), float(values.abs().max())


def test_nll_is_an_unbiased_estimate_of_the_bound():
    method = ctmc("uniform", noise=0.3, nll_time_samples=8)
    exact = exact_ct_bound(method, ORACLE)
    torch.manual_seed(0)
    x0 = ORACLE.sample(3000, torch.Generator().manual_seed(1))
    out = method.nll(Batch(x0))
    torch.testing.assert_close(out.nll, out.terms["prior"] + out.terms["diffusion"])
    assert out.num_dims.tolist() == [3.0] * len(x0)
    se = float(out.nll.std() / len(x0) ** 0.5)
    assert abs(float(out.nll.mean()) - exact) < 4 * se, (float(out.nll.mean()), exact, se)


def test_corrector_rates_leave_the_marginal_invariant():
    """Campbell et al. 2022, Sec. 4.4: R + R_hat has q_s as its stationary distribution (full chain)."""
    method = ctmc("uniform")
    tr = method.transition
    states = all_sequences(tr.num_states)
    s = torch.full((len(states),), 0.375, dtype=torch.float64)  # exact in float32, as the net sees it
    log_q = tr.log_marginal(ORACLE.sequences, 0.375, dtype=torch.float64)
    q_s = torch.exp(
        torch.logsumexp(ORACLE.log_table[:, None] + sum(log_q[:, j, states[:, j]] for j in range(3)), 0)
    )
    forward = tr.rate_row(states, s, dtype=torch.float64).scatter(-1, states[..., None], 0.0)
    per_token = forward + method.reverse_rates(states, s)  # (N, 3, S)
    full = torch.zeros(len(states), len(states), dtype=torch.float64)
    for j in range(3):
        for y in range(tr.num_states):
            target = states.clone()
            target[:, j] = y
            full[torch.arange(len(states)), sequence_index(target, tr.num_states)] += per_token[:, j, y]
    full -= torch.diag(full.sum(1))
    assert float((q_s @ full).abs().max()) < 1e-12


SAMPLERS = [  # (method, sampler, options, TV allowed at 16 steps; measured TV in the comment)
    ("ctmc-uniform", "analytic", {}, 0.05),  # 0.042
    ("ctmc-uniform", "euler", {}, 0.05),  # 0.043
    ("ctmc-uniform", "tau_leaping", {}, 0.08),  # 0.069
    ("ctmc-uniform", "tau_leaping", {"multi_jump": "keep_one"}, 0.065),  # 0.055
    ("ctmc-uniform", "tau_leaping", {"ordinal": True}, 0.09),  # 0.076
    ("ctmc-uniform", "pc", {}, 0.08),  # 0.065
    ("ctmc-absorbing", "analytic", {}, 0.04),  # 0.033
    ("ctmc-absorbing", "euler", {}, 0.04),  # 0.033
    ("ctmc-absorbing", "tau_leaping", {}, 0.04),  # 0.035
    ("ctmc-absorbing", "pc", {}, 0.03),  # 0.026
    ("udlm", "analytic", {}, 0.05),  # 0.042
    ("udlm", "tau_leaping", {}, 0.08),  # 0.069
    ("sedd-absorbing-scaled", "analytic", {}, 0.12),  # 0.099 (geometric noise, equal time steps)
    ("sedd-absorbing-scaled", "euler", {}, 0.14),  # 0.122
    ("sedd-uniform-geometric", "analytic", {}, 0.08),  # 0.066
    ("sedd-uniform-geometric", "tau_leaping", {"multi_jump": "keep_one"}, 0.075),  # 0.062
    ("sedd-uniform-geometric", "pc", {}, 0.07),  # 0.060
]


def _build(name: str, options: dict):
    if name == "udlm":
        return ctmc("uniform", form="d3pm", **options)
    if name.startswith("sedd"):
        transition = {
            "sedd-absorbing-scaled": "absorbing_geometric",
            "sedd-uniform-geometric": "uniform_geometric",
        }
        return sedd(transition[name], scale_by_sigma=name.endswith("scaled"), **options)
    return ctmc(name.removeprefix("ctmc-"), **options)


@pytest.mark.parametrize(("name", "sampler", "options", "tv_allowed"), SAMPLERS)
def test_sampler_matches_its_exact_distribution_and_approaches_the_table(name, sampler, options, tv_allowed):
    method = _build(name, options)
    exact = exact_sampler_distribution(method, 16, sampler)
    samples = method.sample(10_000, steps=16, sampler=sampler, generator=torch.Generator().manual_seed(3)).x
    counts = np.bincount(sequence_index(samples, K).numpy(), minlength=len(exact))
    assert scipy.stats.chisquare(counts, exact * len(samples) / exact.sum()).pvalue > CHI2_LEVEL
    tv = [0.5 * np.abs(exact_sampler_distribution(method, n, sampler) - ORACLE.table).sum() for n in (16, 64)]
    assert tv[0] < tv_allowed and tv[1] < tv[0] / 3, tv  # first order in the step size
