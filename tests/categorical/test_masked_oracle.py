"""Masked diffusion with the exact denoiser of the enumerable distribution (length 3, K = 3).

Measured (nats; data entropy H = 2.5176), exact enumeration over every mask pattern:

========================  ======================  =======================================
schedule                  continuous bound - H    T-step bound - H, T = 8 / 32 / 128 / 1024
========================  ======================  =======================================
loglinear, eps = 0        9e-16                   0.083 / 0.021 / 0.0052 / 0.00065
cosine                    4e-15                   0.100 / 0.025 / 0.0063 / 0.00079
loglinear, eps = 0.05     0.0078243 (prior KL)    0.083 / 0.027 / 0.0125 / 0.0084
========================  ======================  =======================================

(continuous: Gauss-Legendre quadrature with 64 nodes; "prior KL" = KL(q(x_1) || p(x_1)).)
The continuous-time bound with the exact posterior is tight (equal to H) when alpha_1 = 0; a
clipped schedule pays exactly the prior mismatch KL(q(x_1) || p(x_1)). TV distance of the exact
sampler output to the table (loglinear, eps = 0): ancestral 0.127 / 0.033 / 0.0085 / 0.0021 at
4 / 16 / 64 / 256 steps (about 0.54 / steps); argmax 0.724 and confidence 0.411 at any step count
(deterministic token choices are not samples of the data distribution; with this oracle argmax
always returns the same sequence).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch

from discodiff.base import Batch
from discodiff.categorical import D3PM, AbsorbingTransition, D3PMConfig
from discodiff.schedules import CosineSchedule, LogLinearSchedule

from .masked_oracle import exact_bound, exact_sampler_distribution, make_masked, prior_gap
from .sequence_oracle import K, SequenceOracle, sequence_index
from .sequence_oracle import exact_bound as d3pm_exact_bound

ORACLE = SequenceOracle()
H = ORACLE.entropy()
CHI2_LEVEL = 1e-3  # reject a sampler whose draws are this unlikely under its exact distribution
TIGHT = 1e-9  # the tight bound equals H up to float64 rounding of the quadrature (measured 4e-15)
NUM_SAMPLES = 20_000


def _chi2(samples: torch.Tensor, probs: np.ndarray) -> float:
    """Chi-square p-value of the samples against ``probs`` on its support (1 for a point mass);
    a sample outside the support fails outright."""
    counts = np.bincount(sequence_index(samples, K).numpy(), minlength=len(probs))
    support = probs > 0
    assert counts[~support].sum() == 0, "a sample the exact distribution excludes"
    if support.sum() == 1:
        return 1.0
    return float(scipy.stats.chisquare(counts[support], probs[support] * len(samples)).pvalue)


@pytest.mark.parametrize(
    "schedule", [LogLinearSchedule(eps=0.0), CosineSchedule()], ids=["loglinear", "cosine"]
)
def test_continuous_bound_with_the_exact_posterior_equals_the_entropy(schedule):
    assert exact_bound(make_masked(ORACLE, schedule), ORACLE) == pytest.approx(H, abs=TIGHT)


def test_clipped_schedule_pays_exactly_the_prior_mismatch():
    method = make_masked(ORACLE, LogLinearSchedule(eps=0.05))
    gap = prior_gap(method, ORACLE)
    assert gap > 1e-3
    assert exact_bound(method, ORACLE) - H == pytest.approx(gap, abs=TIGHT)


def test_finite_T_bound_is_d3pm_absorbing_bound_and_converges_to_continuous_time():
    schedule = CosineSchedule()
    continuous = exact_bound(make_masked(ORACLE, schedule), ORACLE)
    transition = AbsorbingTransition(schedule, K)
    d3pm = D3PM(ORACLE.net(transition, 16), transition, D3PMConfig(timesteps=16), event_shape=(3,))
    assert exact_bound(make_masked(ORACLE, schedule, timesteps=16), ORACLE) == pytest.approx(
        d3pm_exact_bound(d3pm, ORACLE)[0], abs=1e-9
    )
    gaps = [
        exact_bound(make_masked(ORACLE, schedule, timesteps=T), ORACLE) - continuous for T in (32, 128, 1024)
    ]
    assert gaps[0] / 3.5 > gaps[1] > 0 and gaps[1] / 7 > gaps[2] > 0, gaps  # 1/T: ratios 4 and 8
    assert gaps[2] < 1e-3


@pytest.mark.parametrize("timesteps", [0, 8], ids=["continuous", "T=8"])
def test_monte_carlo_nll_and_loss_are_unbiased(timesteps):
    method = make_masked(ORACLE, LogLinearSchedule(eps=0.05), timesteps=timesteps, nll_time_samples=4)
    exact = exact_bound(method, ORACLE)
    x0 = ORACLE.sample(8000, torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    out = method.nll(Batch(x0))
    assert out.num_dims.tolist() == [3.0] * len(x0)
    torch.testing.assert_close(out.nll, out.terms["prior"] + out.terms["diffusion"])
    se = float(out.nll.std()) / len(x0) ** 0.5
    assert abs(float(out.nll.mean()) - exact) < 4 * se, (float(out.nll.mean()), exact, se)
    loss = method.loss(Batch(x0)).per_example * 3
    se = float(loss.std()) / len(x0) ** 0.5
    assert abs(float(loss.mean()) - exact) < 4 * se, (float(loss.mean()), exact, se)


@pytest.mark.parametrize("samples", [4, 6])
def test_nll_with_at_least_T_samples_sums_every_step_exactly(samples, monkeypatch):
    """With ``nll_time_samples`` >= T the bound's diffusion part is the plain sum over the T grid
    points, each once with weight 1/T. The per-step term is replaced by a known function of t, so
    the result must equal the sum computed here, to float64 rounding. Mutation: force
    ``exact_sum = False`` in ``MaskedDiffusion.nll`` (stratified times then visit some grid points
    twice at 6 samples for T = 4)."""
    T = 4
    method = make_masked(ORACLE, CosineSchedule(), timesteps=T, nll_time_samples=samples)
    x0 = ORACLE.sequences

    def term(x0, t, u, cond=None):
        return (t**2 + 1).to(torch.float32)  # a different value at every grid point

    monkeypatch.setattr(method, "diffusion_term", term)
    torch.manual_seed(0)
    out = method.nll(Batch(x0))
    want = sum((i / T) ** 2 + 1 for i in range(1, T + 1)) / T
    torch.testing.assert_close(out.terms["diffusion"], torch.full((len(x0),), want, dtype=torch.float64))


@pytest.mark.parametrize(
    ("sampler", "steps"), [("ancestral", 16), ("argmax", 8), ("confidence", 3), ("confidence", 8)]
)
def test_samplers_match_their_exact_output_distribution(sampler, steps):
    method = make_masked(ORACLE, LogLinearSchedule(eps=0.0))
    exact = exact_sampler_distribution(method, steps, sampler)
    out = method.sample(NUM_SAMPLES, steps=steps, sampler=sampler, generator=torch.Generator().manual_seed(3))
    assert _chi2(out.x, exact) > CHI2_LEVEL


def test_ancestral_and_caching_match_the_table_at_256_steps():
    method = make_masked(ORACLE, LogLinearSchedule(eps=0.0))
    exact = exact_sampler_distribution(method, 256, "ancestral")
    assert 0.5 * np.abs(exact - ORACLE.table).sum() < 0.003  # measured 0.0021
    out = method.sample(NUM_SAMPLES, steps=256, sampler="caching", generator=torch.Generator().manual_seed(4))
    assert _chi2(out.x, ORACLE.table) > CHI2_LEVEL
    assert out.nfe <= 4  # one evaluation at the start and one after each of the 3 unmasking events


def test_caching_gives_the_ancestral_samples_with_fewer_network_calls():
    method = make_masked(ORACLE, CosineSchedule())
    plain = method.sample(500, steps=64, sampler="ancestral", generator=torch.Generator().manual_seed(5))
    cached = method.sample(500, steps=64, sampler="caching", generator=torch.Generator().manual_seed(5))
    assert torch.equal(plain.x, cached.x)
    assert plain.nfe == 64 and cached.nfe <= 4


def test_infilling_samples_the_exact_conditional():
    """Known tokens stay unmasked from the start; with many steps the output is p(x | known)."""
    method = make_masked(ORACLE, LogLinearSchedule(eps=0.0))
    known = torch.tensor([2, 0, 0])
    mask = torch.tensor([True, False, False])
    start = torch.where(mask, known, K)
    exact = exact_sampler_distribution(method, 256, "ancestral", start=start)
    conditional = np.where(ORACLE.sequences[:, 0].numpy() == 2, ORACLE.table, 0.0)
    conditional /= conditional.sum()
    assert 0.5 * np.abs(exact - conditional).sum() < 0.003
    out = method.sample(
        5000,
        steps=256,
        sampler="caching",
        known=known.expand(5000, 3),
        known_mask=mask.expand(5000, 3),
        generator=torch.Generator().manual_seed(6),
    )
    assert (out.x[:, 0] == 2).all()
    assert _chi2(out.x, conditional) > CHI2_LEVEL
