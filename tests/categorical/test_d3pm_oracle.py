"""D3PM with the exact denoiser of an enumerable distribution (length-3 sequences over K = 3).

Measured with these settings (exact enumeration, nats; data entropy H = 2.5176):

==========  ========================  ===========================================
transition  bound - H at T = 8/32/128  TV(sampler output, table) at steps = T = 32
==========  ========================  ===========================================
uniform     0.127 / 0.032 / 0.0081    0.018
absorbing   0.083 / 0.021 / 0.0052    0.017
marginal    0.127 / 0.033 / 0.0082    0.018
gaussian    0.205 / 0.095 / 0.037     0.053
rate        0.163 / 0.042 / 0.011     0.022
dense       0.141 / 0.123 / 0.123     0.093 (a fixed step matrix: more steps add noise)
==========  ========================  ===========================================

The gap of a factorized reverse model with exact per-token posteriors shrinks like 1/T; the
sampler is therefore tested against its own exact output distribution (enumerated over all S^3
states), and against the table only within the measured gap.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch

from discodiff.base import Batch
from discodiff.categorical import (
    D3PM,
    AbsorbingTransition,
    D3PMConfig,
    DenseTransition,
    DiscretizedGaussianTransition,
    MarginalTransition,
    RateMatrixTransition,
    UniformTransition,
)
from discodiff.schedules import CosineSchedule, GeometricSchedule, LogLinearSchedule

from .dense_reference import dense_d3pm_bound, gaussian_steps, mixing_steps
from .sequence_oracle import K, SequenceOracle, exact_bound, exact_sampler_distribution, sequence_index

ORACLE = SequenceOracle()
H = ORACLE.entropy()
RATE = torch.tensor([[-1.0, 0.7, 0.3], [0.4, -0.9, 0.5], [0.2, 0.6, -0.8]])
DENSE_STEP = torch.tensor([[0.9, 0.06, 0.04], [0.05, 0.9, 0.05], [0.02, 0.08, 0.9]])
CHI2_LEVEL = 1e-3  # reject a sampler whose draws are this unlikely under its exact distribution

# name -> (builder(T), bound gap allowed at T = 32, TV allowed at steps = T = 32)
TRANSITIONS = {
    "uniform": (lambda T: UniformTransition(CosineSchedule(), K), 0.04, 0.03),
    "absorbing": (lambda T: AbsorbingTransition(LogLinearSchedule(eps=0.0), K), 0.03, 0.03),
    "marginal": (lambda T: MarginalTransition(CosineSchedule(), ORACLE.token_marginal()), 0.04, 0.03),
    "gaussian": (lambda T: DiscretizedGaussianTransition(GeometricSchedule(0.01, 300.0), K, T), 0.11, 0.07),
    "rate": (lambda T: RateMatrixTransition(RATE, GeometricSchedule(0.01, 30.0)), 0.05, 0.035),
    "dense": (lambda T: DenseTransition(DENSE_STEP, timesteps=T), 0.13, None),
}


def make(name: str, T: int, *, form: str = "average", oracle_form: str | None = None) -> D3PM:
    transition = TRANSITIONS[name][0](T)
    net = ORACLE.net(transition, T, form=oracle_form or form)
    return D3PM(net, transition, D3PMConfig(timesteps=T, reverse=form), event_shape=(3,))


@pytest.mark.parametrize("name", list(TRANSITIONS))
def test_bound_is_above_the_entropy_and_close_to_it(name):
    bound, per_sequence = exact_bound(make(name, 32), ORACLE)
    assert bound >= H - 1e-9
    assert bound - H <= TRANSITIONS[name][1], f"{name}: gap {bound - H:.4f}"
    assert (per_sequence >= -ORACLE.log_table.double() - 1e-9).any()


DENSE_STEPS = {
    "uniform": lambda T: mixing_steps(CosineSchedule(), np.full(K, 1 / K), T),
    "absorbing": lambda T: mixing_steps(LogLinearSchedule(eps=0.0), np.eye(K + 1)[K], T),
    "gaussian": lambda T: gaussian_steps(GeometricSchedule(0.01, 300.0), K, T),
}
PINNED_GAP = {"uniform": 0.1266687936, "absorbing": 0.0828215850, "gaussian": 0.2053610792}  # T = 8


@pytest.mark.parametrize("name", list(DENSE_STEPS))
def test_exact_bound_equals_the_dense_reference(name):
    """Every sequence's bound at T = 8 equals the dense-matrix sums of Austin et al. (2021), Eq. 3-5,
    written out in numpy (tests/categorical/dense_reference.py), to 1e-10 nats; the data average
    is pinned to the value those sums give. Mutations: ``D3PM.reverse_from_x0`` using the joint form
    for ``reverse: average`` (fails uniform and gaussian; for absorbing the two forms coincide), or
    ``Transition.log_posterior`` taking :math:`q(x_s|x_0)` at t instead of s (fails all three)."""
    _, per_sequence = exact_bound(make(name, 8), ORACLE)
    want = dense_d3pm_bound(DENSE_STEPS[name](8), ORACLE.log_table.numpy(), ORACLE.sequences.numpy(), K)
    np.testing.assert_allclose(per_sequence.numpy(), want, rtol=0, atol=1e-10)
    gap = float(ORACLE.log_table.exp() @ torch.from_numpy(want)) - H
    assert gap == pytest.approx(PINNED_GAP[name], abs=1e-9)


def test_bound_gap_shrinks_like_one_over_T():
    gaps = [exact_bound(make("uniform", T), ORACLE)[0] - H for T in (32, 128)]
    assert 0 < gaps[1] < gaps[0] / 3, gaps


@pytest.mark.parametrize("name", ["uniform", "gaussian"])
def test_d3pm_form_with_its_matching_oracle_equals_the_average_form(name):
    average, _ = exact_bound(make(name, 16), ORACLE)
    d3pm, _ = exact_bound(make(name, 16, form="d3pm"), ORACLE)
    assert d3pm == pytest.approx(average, abs=1e-9)


def test_d3pm_form_with_the_exact_posterior_does_not_converge():
    """PITFALLS "(a)": plugging p(x0|x_t) itself into D3PM's form double-counts q(x_t|x0)."""
    gaps = [
        exact_bound(make("uniform", T, form="d3pm", oracle_form="average"), ORACLE)[0] - H for T in (8, 32)
    ]
    assert gaps[0] > 1.0 and gaps[1] > gaps[0]


def test_monte_carlo_nll_matches_the_exact_bound():
    method = make("uniform", 16)
    exact, _ = exact_bound(method, ORACLE)
    torch.manual_seed(0)
    x0 = ORACLE.sample(4000, torch.Generator().manual_seed(1))
    out = method.nll(Batch(x0))
    assert out.num_dims.tolist() == [3.0] * len(x0)
    total = out.terms["prior"] + out.terms["diffusion"] + out.terms["reconstruction"]
    torch.testing.assert_close(out.nll, total)
    se = float(out.nll.std() / len(x0) ** 0.5)
    assert abs(float(out.nll.mean()) - exact) < 4 * se, (float(out.nll.mean()), exact, se)


def _chi2(samples: torch.Tensor, probs: np.ndarray) -> float:
    counts = np.bincount(sequence_index(samples, K).numpy(), minlength=len(probs))
    return float(scipy.stats.chisquare(counts, probs * len(samples) / probs.sum()).pvalue)


@pytest.mark.parametrize("name", list(TRANSITIONS))
def test_ancestral_samples_match_the_exact_sampler_distribution_and_the_table(name):
    method = make(name, 32)
    exact = exact_sampler_distribution(method, 32)
    samples = method.sample(20_000, generator=torch.Generator().manual_seed(3)).x
    assert _chi2(samples, exact) > CHI2_LEVEL
    tv_allowed = TRANSITIONS[name][2]
    if tv_allowed is not None:
        assert 0.5 * np.abs(exact - ORACLE.table).sum() < tv_allowed


def test_skip_step_sampling_matches_its_exact_distribution():
    method = make("uniform", 32)
    exact = exact_sampler_distribution(method, 8)
    samples = method.sample(20_000, steps=8, generator=torch.Generator().manual_seed(4)).x
    assert _chi2(samples, exact) > CHI2_LEVEL
    assert 0.5 * np.abs(exact - ORACLE.table).sum() < 0.08  # measured 0.053 with 8 of 32 steps
