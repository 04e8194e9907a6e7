"""Every transition against explicit dense matrices (K = 4, T = 6): kernels, marginals, posteriors,
stationary distributions, priors, generators and forward sampling."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from discodiff.categorical import (
    ContinuousTimeTransition,
    DiscretizedGaussianTransition,
    RateMatrixTransition,
)
from discodiff.categorical.logspace import categorical_kl
from discodiff.schedules import CosineSchedule, GeometricSchedule

from .dense_reference import RATE, T, cases, span

CASES = cases()
IDS = [c[0] for c in CASES]
F64 = torch.float64
ATOL = 1e-10


def _exp(x: torch.Tensor) -> np.ndarray:
    return x.exp().numpy()


def _pairs():
    return [(j, k) for k in range(1, T + 1) for j in range(k)]


@pytest.mark.parametrize(("name", "tr", "steps", "ct"), CASES, ids=IDS)
def test_rows_and_columns_equal_products_of_step_matrices(name, tr, steps, ct):
    states = torch.arange(tr.num_states)
    for j, k in _pairs():
        m = span(steps, j, k)
        rows = _exp(tr.log_transition(states, j / T, k / T, dtype=F64))
        cols = _exp(tr.log_likelihood(states, j / T, k / T, dtype=F64))
        np.testing.assert_allclose(rows, m, atol=ATOL, err_msg=f"{name} rows {j}->{k}")
        np.testing.assert_allclose(rows.sum(axis=1), 1.0, atol=ATOL)
        np.testing.assert_allclose(cols, m.T, atol=ATOL, err_msg=f"{name} columns {j}->{k}")
    marginal = _exp(tr.log_marginal(torch.arange(tr.vocab_size), 0.5, dtype=F64))
    np.testing.assert_allclose(marginal, span(steps, 0, T // 2)[: tr.vocab_size], atol=ATOL)


@pytest.mark.parametrize(("name", "tr", "steps", "ct"), CASES, ids=IDS)
def test_propagate_is_a_vector_matrix_product(name, tr, steps, ct):
    gen = torch.Generator().manual_seed(0)
    for width in {tr.vocab_size, tr.num_states}:
        p = torch.rand(3, width, generator=gen, dtype=F64)
        padded = np.zeros((3, tr.num_states))
        padded[:, :width] = p.numpy()
        for j, k in [(0, 3), (2, 3), (1, T)]:
            out = _exp(tr.log_propagate(p.log(), j / T, k / T))
            np.testing.assert_allclose(out, padded @ span(steps, j, k), atol=ATOL)


def _bayes(steps, x0, xt, j, k):
    """q(x_s | x_t, x_0) from dense matrices, or None where q(x_t | x_0) = 0."""
    joint = span(steps, j, k)[:, xt] * span(steps, 0, j)[x0, :]
    denom = span(steps, 0, k)[x0, xt]
    return None if denom == 0 else joint / denom


@pytest.mark.parametrize(("name", "tr", "steps", "ct"), CASES, ids=IDS)
def test_posterior_is_bayes_rule_for_one_hot_x0(name, tr, steps, ct):
    x0, xt = torch.meshgrid(torch.arange(tr.vocab_size), torch.arange(tr.num_states), indexing="ij")
    x0, xt = x0.flatten(), xt.flatten()
    for j, k in _pairs():
        got = _exp(tr.log_posterior(xt, x0, j / T, k / T, dtype=F64))
        checked = 0
        for n in range(len(x0)):
            want = _bayes(steps, int(x0[n]), int(xt[n]), j, k)
            if want is not None:
                np.testing.assert_allclose(got[n], want, atol=1e-9, err_msg=f"{name} {j}->{k} n={n}")
                checked += 1
        assert checked >= tr.vocab_size


@pytest.mark.parametrize(("name", "tr", "steps", "ct"), CASES, ids=IDS)
def test_posteriors_for_a_distribution_over_x0(name, tr, steps, ct):
    """(b) average of Bayes posteriors over the restricted p; (a) normalized sum of joints."""
    gen = torch.Generator().manual_seed(1)
    xt = torch.arange(tr.num_states)
    log_p = torch.log_softmax(2 * torch.randn(tr.num_states, tr.vocab_size, generator=gen, dtype=F64), -1)
    p = log_p.exp().numpy()
    for j, k in [(0, 1), (1, 2), (2, 5), (0, T), (3, T)]:
        expected = _exp(tr.log_posterior_expected(xt, log_p, j / T, k / T))
        joint = _exp(tr.log_posterior_joint(xt, log_p, j / T, k / T))
        for z in range(tr.num_states):
            lik = span(steps, 0, k)[: tr.vocab_size, z]
            w = p[z] * (lik > 0)
            if w.sum() == 0:
                continue
            avg = sum(
                w[x0] / w.sum() * _bayes(steps, x0, z, j, k) for x0 in range(tr.vocab_size) if w[x0] > 0
            )
            np.testing.assert_allclose(expected[z], avg, atol=1e-9, err_msg=f"{name} (b) {j}->{k} z={z}")
            a = span(steps, j, k)[:, z] * (
                np.pad(p[z], (0, tr.num_states - tr.vocab_size)) @ span(steps, 0, j)
            )
            np.testing.assert_allclose(joint[z], a / a.sum(), atol=1e-9, err_msg=f"{name} (a) {j}->{k} z={z}")
        restricted = _exp(tr.restrict_x0(log_p, xt, k / T))
        reachable = span(steps, 0, k)[: tr.vocab_size].sum(axis=0) > 0  # x_t some x_0 can produce
        np.testing.assert_allclose(restricted[reachable].sum(axis=1), 1.0, atol=ATOL)


@pytest.mark.parametrize(("name", "tr", "steps", "ct"), CASES, ids=IDS)
def test_stationary_distribution_and_prior(name, tr, steps, ct):
    pi = _exp(tr.log_stationary())
    np.testing.assert_allclose(pi.sum(), 1.0, atol=ATOL)
    np.testing.assert_allclose(pi @ span(steps, 0, T), pi, atol=1e-9)
    uniform_data = np.zeros(tr.num_states)
    uniform_data[: tr.vocab_size] = 1 / tr.vocab_size
    np.testing.assert_allclose(_exp(tr.log_prior()), uniform_data @ span(steps, 0, T), atol=1e-9)


@pytest.mark.parametrize(
    "tr",
    [c[1] for c in CASES if c[0] in ("uniform", "absorbing", "marginal")]
    + [
        DiscretizedGaussianTransition(GeometricSchedule(0.01, 300.0), 4, 256),
        RateMatrixTransition(torch.tensor(RATE), GeometricSchedule(0.01, 60.0)),
    ],
    ids=["uniform", "absorbing", "marginal", "gaussian_T256", "rate_sigma60"],
)
def test_stationary_distribution_is_reached_at_t1(tr):
    rows = _exp(tr.log_transition(torch.arange(tr.num_states), 0.0, 1.0, dtype=F64))
    pi = _exp(tr.log_stationary())
    np.testing.assert_allclose(rows, np.broadcast_to(pi, rows.shape), atol=1e-8)


@pytest.mark.parametrize(
    ("name", "tr", "steps", "ct"), [c for c in CASES if c[3]], ids=[c[0] for c in CASES if c[3]]
)
def test_generator_exponentiates_to_the_kernel_at_any_times(name, tr, steps, ct):
    assert isinstance(tr, ContinuousTimeTransition)
    states = torch.arange(tr.num_states)
    g = tr.generator_row(states, dtype=F64).numpy()
    np.testing.assert_allclose(g.sum(axis=1), 0.0, atol=ATOL)
    assert (g - np.diag(np.diag(g)) >= 0).all()
    np.testing.assert_allclose(tr.generator_column(states, dtype=F64).numpy(), g.T, atol=ATOL)
    s, t, r = 0.13, 0.58, 0.77  # off the grid
    sb = tr.schedule.sigma_bar(torch.tensor([s, t, r], dtype=F64)).numpy()
    kernel = _exp(tr.log_transition(states, s, t, dtype=F64))
    np.testing.assert_allclose(kernel, scipy.linalg.expm((sb[1] - sb[0]) * g), atol=1e-9)
    composed = kernel @ _exp(tr.log_transition(states, t, r, dtype=F64))
    np.testing.assert_allclose(_exp(tr.log_transition(states, s, r, dtype=F64)), composed, atol=1e-9)


@pytest.mark.parametrize(("name", "tr", "steps", "ct"), CASES, ids=IDS)
def test_sample_transition_follows_the_rows(name, tr, steps, ct):
    n = 40_000
    gen = torch.Generator().manual_seed(2)
    j, k = 1, 4
    want = span(steps, j, k)
    for x in range(tr.num_states):
        xs = torch.full((n,), x)
        draws = tr.sample_transition(xs, j / T, k / T, torch.rand(n, 2, generator=gen, dtype=F64))
        freq = np.bincount(draws.numpy(), minlength=tr.num_states) / n
        np.testing.assert_allclose(freq, want[x], atol=0.012)  # > 5 binomial std. devs at n = 40k
        assert (freq[want[x] == 0] == 0).all()


def test_grid_transitions_refuse_times_off_the_grid():
    tr = CASES[IDS.index("gaussian")][1]
    with pytest.raises(ValueError, match="grid"):
        tr.log_transition(torch.arange(4), 0.1, 0.5, dtype=F64)
    with pytest.raises(ValueError, match="earlier"):
        tr.log_transition(torch.arange(4), 4 / T, 2 / T, dtype=F64)


@pytest.mark.parametrize("name", ["absorbing", "uniform", "dense"])
def test_posterior_gradients_are_finite_at_every_step(name):
    """Zero-probability states must not poison gradients (absorbing at s = 0 has them)."""
    tr = CASES[IDS.index(name)][1]
    x0_all, xt_all = torch.meshgrid(torch.arange(tr.vocab_size), torch.arange(tr.num_states), indexing="ij")
    for j, k in [(0, 1), (2, 3), (T - 1, T)]:
        possible = (
            tr.log_marginal(x0_all.flatten(), k / T, dtype=F64)
            .exp()
            .flatten()[torch.arange(x0_all.numel()) * tr.num_states + xt_all.flatten()]
        )
        x0, xt = x0_all.flatten()[possible > 0], xt_all.flatten()[possible > 0]
        logits = torch.randn(len(xt), tr.vocab_size, dtype=F64, requires_grad=True)
        log_q = tr.log_posterior(xt, x0, j / T, k / T, dtype=F64)
        for form in (tr.log_posterior_expected, tr.log_posterior_joint):
            kl = categorical_kl(log_q, form(xt, torch.log_softmax(logits, -1), j / T, k / T))
            kl.sum().backward()
            assert torch.isfinite(logits.grad).all(), (name, j, k)
            logits.grad = None


def test_bad_construction_arguments_raise():
    with pytest.raises(ValueError, match="row-stochastic"):
        CASES[IDS.index("dense")][1].__class__(torch.ones(2, 3, 3))
    with pytest.raises(ValueError, match="rows summing to 0"):
        RateMatrixTransition(torch.ones(3, 3), CosineSchedule())
    with pytest.raises(ValueError, match="non-negative"):
        CASES[IDS.index("marginal")][1].__class__(CosineSchedule(), torch.tensor([0.5, -0.1, 0.6]))


@pytest.mark.parametrize(
    ("name", "tr", "steps", "ct"), [c for c in CASES if c[3]], ids=[c[0] for c in CASES if c[3]]
)
def test_reverse_rates_against_dense_bayes_and_the_discrete_limit(name, tr, steps, ct):
    gen = torch.Generator().manual_seed(5)
    x = torch.arange(tr.num_states)
    log_p = torch.log_softmax(torch.randn(tr.num_states, tr.vocab_size, generator=gen, dtype=F64), -1)
    t = 0.4
    sb, dsb = (
        tr.schedule.sigma_bar(torch.tensor([0.0, t], dtype=F64)),
        tr.schedule.dsigma_bar(torch.tensor(t, dtype=F64)),
    )
    g = tr.generator_row(x, dtype=F64).numpy()
    q_t = scipy.linalg.expm((sb[1] - sb[0]).item() * g)  # Q(0, t)
    rates = tr.reverse_rates(x, log_p, t).numpy()
    np.testing.assert_allclose(rates.sum(axis=1), 0.0, atol=1e-9)
    for z in range(tr.num_states):
        w = log_p[z].exp().numpy() * (q_t[: tr.vocab_size, z] > 0)
        if w.sum() == 0:
            continue
        w = w / w.sum() / np.where(q_t[: tr.vocab_size, z] > 0, q_t[: tr.vocab_size, z], 1.0)
        want = float(dsb) * g[:, z] * (np.pad(w, (0, tr.num_states - tr.vocab_size)) @ q_t)
        want[z] = 0.0
        want[z] = -want.sum()
        np.testing.assert_allclose(rates[z], want, rtol=1e-9, atol=1e-12, err_msg=f"{name} z={z}")
    h = 1e-7  # p(x_{t-h} = y | x_t = x) / h -> rate(x -> y)
    step = tr.log_posterior_expected(x, log_p, t - h, t).exp().numpy() / h
    off = ~np.eye(tr.num_states, dtype=bool)
    reachable = (q_t[: tr.vocab_size].sum(axis=0) > 0)[:, None] & off
    np.testing.assert_allclose(step[reachable], rates[reachable], rtol=1e-5, atol=1e-5)  # two jumps: O(h)
