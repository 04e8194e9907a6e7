"""Discrete flow matching with exact networks on the enumerable length-3, K = 3 distribution
(H = 2.5176 nats): the ELBO, its equivalence with MDLM for the mask source, the samplers against
the table, guidance and infilling."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.stats
import torch

from discodiff.base import Batch
from discodiff.categorical import (
    AbsorbingTransition,
    DFMConfig,
    DiscreteFlowMatching,
    MaskedConfig,
    MaskedDiffusion,
)
from discodiff.categorical.continuous_time import LAST_TIME
from discodiff.categorical.masked_process import elbo_weight
from discodiff.categorical.mixing import UniformTransition
from discodiff.categorical.ratios import score_entropy
from discodiff.schedules import LogLinearSchedule, PolynomialSchedule

from .ctmc_oracle import exact_ct_bound, posterior_net
from .sequence_oracle import K, L, SequenceOracle, all_sequences, sequence_index

ORACLE = SequenceOracle()
H = ORACLE.entropy()
F64 = torch.float64
TIGHT = 1e-6  # quadrature error of exact_ct_bound (96 nodes), as in test_ctmc_oracle
CHI2_LEVEL = 1e-3


BELOW_ONE = 1 - 2**-24  # the largest float32 below 1: networks see float32 times


def oracle_net(tr, oracle: SequenceOracle = ORACLE, *, noise: float = 0.0, floor: float = -torch.inf):
    """The exact posterior network, evaluated below t = 1 (where the float32 time 1.0 would make
    every unmasked token impossible) and with log-probabilities floored at ``floor`` (finite
    logits for guidance); undefined posteriors (impossible x_t) are uniform."""
    exact = posterior_net(oracle, tr, noise=noise)

    def net(x_t, t, cond=None):
        out = exact(x_t, t.double().clamp(max=BELOW_ONE))
        return torch.nan_to_num(out, nan=0.0).clamp(min=floor)

    return net


def dfm(
    source: str = "mask", exponent: float = 1.0, *, noise: float = 0.0, **options
) -> DiscreteFlowMatching:
    path = AbsorbingTransition if source == "mask" else UniformTransition
    tr = path(PolynomialSchedule(exponent), K)
    return DiscreteFlowMatching(oracle_net(tr, noise=noise), tr, DFMConfig(**options), event_shape=(L,))


def test_polynomial_schedule_is_kappa_in_reversed_time():
    t = torch.linspace(0, 0.999, 50, dtype=F64)
    for n in (1.0, 2.0, 3.5):
        sched = PolynomialSchedule(n)
        torch.testing.assert_close(sched.alpha_bar(t), (1 - t) ** n)  # kappa(s) = s^n at s = 1 - t
        h = 1e-6
        numeric = (sched.sigma_bar(t + h) - sched.sigma_bar(t - h)) / (2 * h)
        torch.testing.assert_close(sched.dsigma_bar(t), numeric, rtol=1e-6, atol=0)
    torch.testing.assert_close(PolynomialSchedule(1.0).sigma_bar(t), LogLinearSchedule(eps=0.0).sigma_bar(t))


@pytest.mark.parametrize("exponent", [1.0, 2.0])
def test_mask_source_elbo_with_the_exact_posterior_is_the_entropy(exponent):
    bound = exact_ct_bound(dfm("mask", exponent), ORACLE)
    assert abs(bound - H) < TIGHT, bound - H


def test_uniform_source_elbo_is_above_the_entropy_and_a_worse_network_is_further():
    """The uniform path's conditional process jumps only to x0, which is not the time reversal of
    a noising chain, so even the exact posterior leaves a gap (measured: 0.8424 nats)."""
    exact = exact_ct_bound(dfm("uniform"), ORACLE)
    worse = exact_ct_bound(dfm("uniform", noise=0.3), ORACLE)
    assert 0.80 < exact - H < 0.88, exact - H
    assert worse > exact + 0.01, (worse, exact)


def test_generalized_kl_is_the_closed_form():
    """Score entropy with the DFM hooks = w [d - p(x_t) - (1 - d) log p(x0)], d = [x_t = x0]."""
    method = dfm("uniform", 2.0, noise=0.5)
    gen = torch.Generator().manual_seed(0)
    x0 = ORACLE.sample(400, gen)
    t = torch.rand(400, generator=gen, dtype=F64).float().double()
    x_t = method.transition.sample_marginal(x0, t, torch.rand(400, L, 2, generator=gen, dtype=F64))
    log_p = method.denoise(x_t, t)
    d = (x_t == x0).double()
    p_xt, log_p_x0 = log_p.gather(-1, x_t[..., None])[..., 0].exp(), log_p.gather(-1, x0[..., None])[..., 0]
    w = elbo_weight(method.transition.schedule, t, 0)[:, None]
    expected = w * (d - p_xt - (1 - d) * log_p_x0)
    got = score_entropy(
        method.log_ratios(x_t, t),
        method.target_log_ratios(x0, x_t, t, dtype=F64),
        method.rate_weights(x_t, t, dtype=F64),
    )
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_mask_source_linear_path_has_mdlms_integrand_and_ce():
    """Same network, same (x_t, t): DFM's generalized KL per token = MDLM's w(t) * CE on masked
    tokens, and the DFM cross-entropy loss per token = MDLM's masked cross-entropy."""
    vocab, length, n = 7, 5, 64
    gen = torch.Generator().manual_seed(1)
    table = torch.randn(length, vocab + 1, vocab, generator=gen, dtype=F64)

    def net(x_t, t, cond=None):  # ignores t, as MDLM's default network input does
        return table[torch.arange(length), x_t]

    tr = AbsorbingTransition(PolynomialSchedule(1.0), vocab)
    flow = DiscreteFlowMatching(net, tr, DFMConfig(), event_shape=(length,))
    mdlm = MaskedDiffusion(
        net, AbsorbingTransition(LogLinearSchedule(eps=0.0), vocab), MaskedConfig(), event_shape=(length,)
    )
    x0 = torch.randint(0, vocab, (n, length), generator=gen)
    t = torch.rand(n, generator=gen, dtype=F64)
    x_t = tr.sample_marginal(x0, t, torch.rand(n, length, 2, generator=gen, dtype=F64))
    masked = x_t == tr.mask_id
    ce_mdlm = -mdlm.denoise(x_t, t).gather(-1, x0[..., None])[..., 0]  # 0 on unmasked (carry-over)
    weight = elbo_weight(mdlm.schedule, t, 0)[:, None]
    gkl = score_entropy(
        flow.log_ratios(x_t, t),
        flow.target_log_ratios(x0, x_t, t, dtype=F64),
        flow.rate_weights(x_t, t, dtype=F64),
    )
    torch.testing.assert_close(gkl, torch.where(masked, weight * ce_mdlm, 0.0), rtol=1e-10, atol=1e-12)
    ce_dfm = -flow.denoise(x_t, t).gather(-1, x0[..., None])[..., 0]
    torch.testing.assert_close(ce_dfm, ce_mdlm, rtol=0, atol=1e-12)
    assert masked.any() and (~masked).any()


@pytest.mark.parametrize("vocab", [5, 50_257])
def test_mask_source_bound_in_closed_form_equals_the_generic_score_entropy(vocab):
    """DFM's mask-source integrand (weighted cross-entropy from the logits) against the core's
    generic score entropy with DFM's ratios, targets and weights, on identical inputs, at K = 5 and
    GPT-2's K = 50,257, in float64 and in the network's float32."""
    length, n = 4, 6
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(n, length, vocab, generator=gen, dtype=F64) * 3

    def net(x_t, t, cond=None):  # fixed logits: both sides see the same network output
        return logits.to(torch.float32 if net.fp32 else F64)

    tr = AbsorbingTransition(PolynomialSchedule(1.0), vocab)
    flow = DiscreteFlowMatching(net, tr, DFMConfig(), event_shape=(length,))
    x0 = torch.randint(0, vocab, (n, length), generator=gen)
    t = torch.rand(n, generator=gen, dtype=F64) * 0.98 + 0.01
    x_t = tr.sample_marginal(x0, t, torch.rand(n, length, 2, generator=gen, dtype=F64))
    assert (x_t == tr.mask_id).any() and (x_t != tr.mask_id).any()
    generic = super(DiscreteFlowMatching, flow).elbo_integrand
    for fp32, dtype, tol in ((False, None, 1e-12), (True, None, 2e-5), (True, F64, 1e-5)):
        net.fp32 = fp32
        got, want = flow.elbo_integrand(x0, x_t, t, dtype=dtype), generic(x0, x_t, t, dtype=dtype)
        assert got.dtype == want.dtype
        torch.testing.assert_close(got, want, rtol=tol, atol=0)


def marginal(tr, t: float) -> torch.Tensor:
    """q_t over all S^3 states: sum over the data of prod_i q(x_t^i | x_0^i), float64."""
    states = all_sequences(tr.num_states)
    times = torch.full((len(ORACLE.sequences),), t, dtype=F64)
    log_q = tr.log_marginal(ORACLE.sequences, times, dtype=F64)  # (27, L, S)
    per_x0 = sum(log_q[:, j, states[:, j]] for j in range(L))  # (27, S^3)
    return torch.logsumexp(ORACLE.log_table[:, None] + per_x0, dim=0).exp()


def generator(method: DiscreteFlowMatching, t: float) -> torch.Tensor:
    """The model's rate matrix over all S^3 states (one token changes per jump), rows summing to 0."""
    states = all_sequences(method.transition.num_states)
    S, n = method.transition.num_states, len(states)
    with torch.no_grad():
        rates = method.reverse_rates(states, torch.full((n,), t, dtype=F64)).double()  # (n, L, S)
    G = torch.zeros(n, n, dtype=F64)
    for i in range(L):
        for y in range(S):
            target = states.clone()
            target[:, i] = y
            G[torch.arange(n), sequence_index(target, S)] += rates[:, i, y]
    return G - torch.diag(G.sum(1))


@pytest.mark.parametrize(
    ("source", "eta"), [("mask", 0.0), ("mask", 2.5), ("uniform", 0.0), ("uniform", 1.5)]
)
def test_rates_with_the_exact_posterior_generate_the_path(source, eta):
    """Kolmogorov: q_t G = -dq_t/dt for the reverse-time chain (Campbell et al. 2024, Prop. 3.1),
    with or without the detailed-balance part, which must leave q_t unchanged (q_t G_eta = 0)."""
    method = dfm(source, 2.0, eta=eta)
    for t in (0.2, 0.5, 0.8):
        q, h = marginal(method.transition, t), 1e-5
        dq = (marginal(method.transition, t + h) - marginal(method.transition, t - h)) / (2 * h)
        torch.testing.assert_close(q @ generator(method, t), -dq, rtol=0, atol=1e-7)


def _kernels(method: DiscreteFlowMatching, x: torch.Tensor, s: float, t: float, sampler: str) -> torch.Tensor:
    """Per-token step distributions ``(N, L, S)``, written from the formulas (not by calling the
    samplers): Euler moves with probability 1 - exp(-h lambda) to y proportional to the rates."""
    n = len(x)
    tt, ss = torch.full((n,), min(t, LAST_TIME), dtype=F64), torch.full((n,), s, dtype=F64)
    if sampler == "analytic" or s == 0:
        return torch.softmax(method.analytic_log_probs(x, ss, tt).double(), dim=-1)
    rates = method.reverse_rates(x, tt).double()
    lam = rates.sum(-1, keepdim=True)
    leave = 1 - torch.exp(-(t - s) * lam)
    probs = torch.where(lam > 0, leave * rates / lam.clamp(min=1e-300), 0.0)
    return probs.scatter(-1, x[..., None], 1 - leave)


def exact_distribution(method: DiscreteFlowMatching, steps: int, sampler: str, known=None) -> np.ndarray:
    """The exact output distribution over the 27 sequences, by propagating all S^3 states."""
    tr = method.transition
    states = all_sequences(tr.num_states)
    free = [k for k in range(L) if known is None or k != known[0]]
    dist = torch.exp(sum(tr.log_prior()[states[:, k]] for k in free))
    if known is not None:  # pinned: position j holds value v from the start
        dist = torch.where(states[:, known[0]] == known[1], dist, 0.0)
    grid = np.linspace(1.0, 0.0, steps + 1)
    with torch.no_grad():
        for t, s in itertools.pairwise(grid):
            live = dist > 0
            kern = _kernels(method, states[live], s, t, sampler)
            if known is not None:
                kern[:, known[0]] = torch.nn.functional.one_hot(
                    torch.tensor(known[1]), tr.num_states
                ).double()
            step = torch.exp(sum(torch.log(kern[:, k, states[:, k]]) for k in range(L)))
            dist = dist[live] @ step
    data = (states < K).all(dim=1)
    assert float(dist[~data].sum()) < 1e-12
    return dist[data].numpy()


def chi2_pvalue(draws: torch.Tensor, probs: np.ndarray) -> float:
    counts = np.bincount(sequence_index(draws, K).numpy(), minlength=K**L)
    assert counts[probs == 0].sum() == 0, "draws where the sampler puts no mass"
    counts, expected = counts[probs > 0], probs[probs > 0] * counts.sum()
    keep = expected > 5
    if not keep.all():  # pool the small cells
        counts = np.append(counts[keep], counts[~keep].sum())
        expected = np.append(expected[keep], expected[~keep].sum())
    return scipy.stats.chisquare(counts, expected).pvalue


@pytest.mark.parametrize(
    ("source", "sampler", "eta"),
    [("mask", "euler", 0.0), ("mask", "euler", 3.0), ("uniform", "euler", 1.0), ("uniform", "analytic", 0.0)],
)
def test_samplers_reach_the_table_and_draw_from_their_exact_distribution(source, sampler, eta):
    method = dfm(source, eta=eta)
    tv = [0.5 * np.abs(exact_distribution(method, steps, sampler) - ORACLE.table).sum() for steps in (8, 64)]
    assert tv[1] < tv[0] / 3 and tv[1] < 0.05, tv  # measured: 0.066 -> 0.0085 (mask) ... 0.17 -> 0.045
    draws = method.sample(6000, steps=8, sampler=sampler, generator=torch.Generator().manual_seed(0)).x
    assert chi2_pvalue(draws, exact_distribution(method, 8, sampler)) > CHI2_LEVEL


def test_infilling_with_the_mask_source_conditions_exactly():
    method = dfm("mask")
    known, mask = torch.zeros(6000, L, dtype=torch.long), torch.zeros(6000, L, dtype=torch.bool)
    known[:, 1], mask[:, 1] = 2, True
    out = method.sample(
        6000, steps=16, known=known, known_mask=mask, generator=torch.Generator().manual_seed(0)
    ).x
    assert (out[:, 1] == 2).all()
    target = ORACLE.table * (ORACLE.sequences[:, 1] == 2).numpy()
    target /= target.sum()
    exact = exact_distribution(method, 256, "euler", known=(1, 2))
    assert 0.5 * np.abs(exact - target).sum() < 0.01
    assert chi2_pvalue(out, exact_distribution(method, 16, "euler", known=(1, 2))) > CHI2_LEVEL


def test_classifier_free_guidance_interpolates_between_the_unconditional_and_conditional_models():
    """Labels 0 / 1 select the sequences starting with 0 / not; the null label is the mixture.
    Guidance scale 1 samples the class, 0 the unconditional model, 2 sharpens towards the class."""
    tr = AbsorbingTransition(PolynomialSchedule(1.0), K)
    uncond = oracle_net(tr, floor=-30.0)
    first = ORACLE.sequences[:, 0]

    class ClassOracle(SequenceOracle):
        def __init__(self, keep):
            super().__init__()
            self.log_table = torch.log_softmax(torch.where(keep, self.log_table, -torch.inf), 0)

    nets = {
        c: oracle_net(tr, ClassOracle(keep), floor=-30.0) for c, keep in enumerate([first == 0, first != 0])
    }

    def net(x_t, t, cond):
        out = uncond(x_t, t).clone()
        for c, class_net in nets.items():
            rows = cond == c
            if rows.any():
                out[rows] = class_net(x_t[rows], t[rows])
        return out

    method = DiscreteFlowMatching(net, tr, DFMConfig(), event_shape=(L,), num_classes=2)
    gen = torch.Generator().manual_seed(0)
    labels = torch.zeros(3000, dtype=torch.long)

    def share_of_class(scale):
        out = method.sample(3000, steps=16, cond=labels, guidance_scale=scale, generator=gen)
        return float((out.x[:, 0] == 0).double().mean()), out.nfe

    p_class0 = float(ORACLE.log_table.exp()[first == 0].sum())
    unguided, nfe1 = share_of_class(1.0)
    unconditional, _ = share_of_class(0.0)
    sharpened, nfe2 = share_of_class(2.0)
    assert unguided == 1.0 and sharpened == 1.0
    assert abs(unconditional - p_class0) < 0.04, (unconditional, p_class0)
    assert nfe2 == 2 * nfe1


def test_cross_entropy_loss_and_nll_run_on_a_batch():
    method = dfm("uniform", loss="ce", nll_time_samples=4)
    x0 = ORACLE.sample(32, torch.Generator().manual_seed(3))
    torch.manual_seed(0)
    out = method.loss(Batch(x0))
    assert out.loss > 0 and "ce_nats_per_token" in out.metrics
    assert torch.isfinite(method.nll(Batch(x0)).nll).all()
