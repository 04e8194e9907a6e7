"""The closed forms of the continuous-time methods for uniform and absorbing transitions
(:mod:`discodiff.categorical.closed_forms`, :mod:`~discodiff.categorical.closed_steps`) against the
generic dense path they replace, at K = 5 in float64 and at K = 50,257 in float32: the score-entropy
integrand and its gradient, the reverse rates, and the distribution of every sampler step.

Tolerances: float64 agrees to 1e-9 (relative); float32 at K = 50,257 to 2e-5 relative (sums over
5e4 float32 terms; measured max 3e-6) and 1e-5 of the largest gradient entry.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from discodiff.categorical import CTMC, SEDD, AbsorbingTransition, ContinuousTimeOptions, UniformTransition
from discodiff.categorical.closed_steps import analytic_moves, implied_log_probs, jump_moves
from discodiff.categorical.jumps import euler_log_probs
from discodiff.schedules import GeometricSchedule, LogLinearSchedule

from .ctmc_oracle import jump_kernel

CASES = ["sedd-absorbing", "sedd-absorbing-scaled", "sedd-uniform", "ctmc-uniform", "udlm", "ctmc-absorbing"]
TIMES = (1e-4, 0.3, 0.7, 1 - 1e-6)


class FixedOutput(nn.Module):
    """A 'network' returning one fixed tensor, so both paths see identical outputs."""

    def __init__(self, z: torch.Tensor) -> None:
        super().__init__()
        self.z = nn.Parameter(z)

    def forward(self, x, t, cond=None):
        return self.z


def make(name: str, K: int, shape: tuple[int, int], dtype: torch.dtype, seed: int = 0):
    """(method, x0, x_t, t) with random outputs of scale 2 and x_t drawn from q(x_t | x0)."""
    g = torch.Generator().manual_seed(seed)
    absorbing = "absorbing" in name
    schedule = LogLinearSchedule(eps=0.0) if absorbing else GeometricSchedule(sigma_max=20.0)
    tr = AbsorbingTransition(schedule, K) if absorbing else UniformTransition(schedule, K)
    net = FixedOutput(2 * torch.randn(*shape, K, generator=g, dtype=dtype))
    options = ContinuousTimeOptions()
    if name.startswith("sedd"):
        method = SEDD(net, tr, options, scale_by_sigma=name.endswith("scaled"), event_shape=shape[1:])
    else:
        method = CTMC(
            net, tr, options, reverse="d3pm" if name == "udlm" else "average", event_shape=shape[1:]
        )
    x0 = torch.randint(0, K, shape, generator=g)
    t = torch.tensor(TIMES[: shape[0]], dtype=torch.float64)
    x_t = tr.sample_marginal(x0, t, torch.rand(*shape, 2, generator=g, dtype=torch.float64))
    if absorbing:  # at least one masked and one clean token per example
        x_t[:, 0], x_t[:, 1] = K, x0[:, 1]
    return method, x0, x_t, t


def both_paths(method, fn):
    """``fn()`` with the closed forms, then with the generic path (``closed = None``)."""
    closed = method.closed
    out = fn()
    method.closed = None
    try:
        return out, fn()
    finally:
        method.closed = closed


def integrand_and_grad(method, x0, x_t, t, dtype=None):
    method.net.z.grad = None
    value = method.elbo_integrand(x0, x_t, t, dtype=dtype)
    value.sum().backward()
    return value.detach(), method.net.z.grad.clone()


def assert_close(a, b, rtol, what):
    scale = b.abs().max().clamp(min=1e-30)
    assert torch.allclose(a, b, rtol=rtol, atol=rtol * scale), f"{what}: max diff {(a - b).abs().max():.3g}"


def assert_as_accurate(closed, generic, exact, rtol, what):
    """The closed form's largest error against the float64 result is at most twice the generic
    float32 path's plus ``rtol`` of the largest entry (ill-conditioned entries, e.g. ratios of
    1e11 at t = 1e-4, are equally wrong on both paths)."""
    scale = exact.abs().max()
    err_closed = (closed.double() - exact).abs().max()
    err_generic = (generic.double() - exact).abs().max()
    assert err_closed <= 2 * err_generic + rtol * scale, f"{what}: errors {err_closed:.3g}, {err_generic:.3g}"


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize(("K", "dtype", "rtol"), [(5, torch.float64, 1e-9), (50_257, torch.float32, 2e-5)])
def test_score_entropy_and_its_gradient_equal_the_generic_path(name, K, dtype, rtol):
    shape = (4, 3) if K == 5 else (2, 3)
    method, x0, x_t, t = make(name, K, shape, dtype)
    (v_closed, g_closed), (v_generic, g_generic) = both_paths(
        method, lambda: integrand_and_grad(method, x0, x_t, t)
    )
    assert torch.isfinite(v_closed).all() and (v_closed >= 0).all()
    if dtype == torch.float64:
        assert_close(v_closed, v_generic, rtol, "integrand")
        assert_close(g_closed, g_generic, rtol, "gradient")
        return
    exact, _, _, _ = make(name, K, shape, torch.float64)  # the same outputs in float64
    exact.closed = None
    v_exact, g_exact = integrand_and_grad(exact, x0, x_t, t)
    assert_as_accurate(v_closed, v_generic, v_exact, rtol, "integrand")
    assert_as_accurate(g_closed, g_generic, g_exact, rtol, "gradient")


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize(("K", "dtype", "rtol"), [(5, torch.float64, 1e-9), (50_257, torch.float32, 2e-5)])
def test_reverse_rates_equal_the_generic_path(name, K, dtype, rtol):
    method, _, x_t, t = make(name, K, (4, 3) if K == 5 else (2, 3), dtype)
    with torch.no_grad():
        closed, generic = both_paths(method, lambda: method.reverse_rates(x_t, t))
    assert_close(closed, generic, rtol, "rates")


def test_float64_likelihood_path_matches_at_large_vocabulary():
    method, x0, x_t, t = make("sedd-uniform", 50_257, (2, 3), torch.float32)
    with torch.no_grad():
        closed, generic = both_paths(method, lambda: method.elbo_integrand(x0, x_t, t, dtype=torch.float64))
    assert_close(closed, generic, 1e-9, "float64 integrand")


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("K", [5, 50_257])
def test_sampler_steps_draw_from_the_generic_steps_distribution(name, K):
    """Implied per-token distributions of the closed-form steps against the dense generic kernels."""
    method, _, x_t, t = make(name, K, (4, 3) if K == 5 else (2, 3), torch.float64)
    t = t.clamp(max=1 - 1e-6)
    s = t * 0.6
    cf = method.closed
    with torch.no_grad():
        rows = method.ratio_rows(x_t, t)
        rates = method.reverse_rates(x_t, t)
        cases = {
            "analytic": (analytic_moves(cf, rows, x_t, s, t), method.analytic_log_probs(x_t, s, t)),
            "analytic to 0": (
                analytic_moves(cf, rows, x_t, torch.zeros_like(s), t),
                method.analytic_log_probs(x_t, torch.zeros_like(s), t),
            ),
            "euler": (
                jump_moves(cf, rows, x_t, t - s, t, tau=False, multi_jump="reject"),
                euler_log_probs(rates.clone(), x_t, t - s),
            ),
        }
        for multi_jump in ("reject", "keep_one"):
            kernel = jump_kernel(rates, x_t, (t - s)[:, None, None], "tau_leaping", multi_jump, False)
            moves = jump_moves(cf, rows, x_t, t - s, t, tau=True, multi_jump=multi_jump)
            cases[f"tau {multi_jump}"] = (moves, kernel.log())
    for what, (moves, reference) in cases.items():
        implied = implied_log_probs(cf, rows.z, x_t, moves).exp()
        expected = torch.softmax(reference.double(), dim=-1)
        assert torch.allclose(implied, expected, atol=1e-9), f"{what}: {(implied - expected).abs().max():.3g}"


def test_absorbing_sedd_integrand_is_the_masked_cross_entropy_form():
    """CTMC-absorbing's closed form is sigma'/expm1(Delta) times the cross-entropy on masked tokens."""
    method, x0, x_t, t = make("ctmc-absorbing", 7, (4, 5), torch.float64)
    with torch.no_grad():
        value = method.elbo_integrand(x0, x_t, t)
    log_p = torch.log_softmax(method.net.z.detach(), dim=-1).gather(-1, x0[..., None])[..., 0]
    delta = method.transition.schedule.sigma_bar(t)
    weight = method.transition.schedule.dsigma_bar(t) / torch.expm1(delta)
    expected = (weight[:, None] * -log_p * (x_t == 7)).sum(1)
    assert torch.allclose(value, expected, rtol=1e-10)
    assert math.isfinite(float(value.sum()))
