"""The categorical sampler helpers and the log-space helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch

from discodiff.categorical.logspace import categorical_kl, log_add_exp
from discodiff.categorical.sampling import sample_categorical, sample_inverse_cdf, sharpen
from discodiff.utils import log1mexp

PROBS = torch.tensor([0.5, 0.0, 0.3, 0.15, 0.05, 0.0], dtype=torch.float64)
CHI2_LEVEL = 1e-3


def _check_frequencies(draws: torch.Tensor) -> None:
    counts = np.bincount(draws.flatten().numpy(), minlength=len(PROBS))
    assert counts[PROBS.numpy() == 0].sum() == 0
    support = PROBS.numpy() > 0
    expected = PROBS.numpy()[support] * draws.numel()
    assert scipy.stats.chisquare(counts[support], expected).pvalue > CHI2_LEVEL


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_gumbel_max_draws_follow_the_distribution(dtype):
    log_p = PROBS.log().to(dtype).expand(200, 100, -1)
    draws = sample_categorical(log_p, generator=torch.Generator().manual_seed(0))
    assert draws.shape == (200, 100) and draws.dtype == torch.long
    if dtype != torch.bfloat16:  # bfloat16 rounds the probabilities themselves
        _check_frequencies(draws)


def test_gumbel_max_is_reproducible_and_refuses_bad_rows():
    log_p = PROBS.log().expand(50, -1)
    a, b, c = (sample_categorical(log_p, generator=torch.Generator().manual_seed(s)) for s in (1, 1, 2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(ValueError, match="no positive probability"):
        sample_categorical(torch.full((2, 3), -math.inf))
    with pytest.raises(ValueError, match="NaN"):
        sample_categorical(torch.tensor([[0.0, math.nan]]))


def test_unnormalized_log_probabilities_are_accepted():
    draws = sample_categorical(
        (PROBS.log() + 7.0).expand(20_000, -1), generator=torch.Generator().manual_seed(3)
    )
    _check_frequencies(draws)


def test_inverse_cdf_for_shared_and_per_row_distributions():
    gen = torch.Generator().manual_seed(4)
    u = torch.rand(20_000, generator=gen, dtype=torch.float64)
    _check_frequencies(sample_inverse_cdf(PROBS.log(), u))
    _check_frequencies(sample_inverse_cdf(PROBS.log().expand(20_000, -1), u))
    edge = sample_inverse_cdf(PROBS.log(), torch.tensor([0.0, 1 - 2**-53], dtype=torch.float64))
    assert edge.tolist() == [0, 4]  # never a zero-probability id, even at the ends of [0, 1)


def test_sharpen_temperature_and_top_p():
    log_p = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=torch.float64))
    assert torch.equal(sharpen(log_p), log_p)
    assert sharpen(log_p, temperature=0.0).exp().tolist() == [1.0, 0.0, 0.0, 0.0]
    torch.testing.assert_close(sharpen(log_p, temperature=2.0).exp(), torch.softmax(log_p / 2, 0))
    torch.testing.assert_close(
        sharpen(log_p, top_p=0.8).exp(), torch.tensor([0.625, 0.375, 0, 0], dtype=torch.float64)
    )
    assert (sharpen(log_p, top_p=0.81).exp() > 0).sum() == 3
    assert (sharpen(log_p, top_p=1e-6).exp() > 0).sum() == 1  # the most likely id always stays
    with pytest.raises(ValueError, match="top_p"):
        sharpen(log_p, top_p=0.0)
    with pytest.raises(ValueError, match="temperature"):
        sharpen(log_p, temperature=-1.0)


def test_log1mexp_is_accurate_at_both_ends():
    x = torch.tensor([-1e-12, -1e-3, -0.5, -5.0, -50.0, 0.0, -math.inf], dtype=torch.float64)
    want = [math.log(-math.expm1(v)) if -1 < v < 0 else math.log1p(-math.exp(v)) for v in x.tolist()[:5]]
    torch.testing.assert_close(log1mexp(x[:5]), torch.tensor(want, dtype=torch.float64), rtol=1e-14, atol=0)
    assert log1mexp(x[5:]).tolist() == [-math.inf, 0.0]


def test_log_add_exp_has_zero_gradient_where_both_terms_vanish():
    a = torch.tensor([-math.inf, 0.5, -math.inf, 2.0], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([-math.inf, -math.inf, 1.0], dtype=torch.float64, requires_grad=True)[None].expand(2, 3)
    out = log_add_exp(a[:3].expand(2, 3), b)
    torch.testing.assert_close(out.detach(), torch.logaddexp(a[:3].detach(), b.detach()))
    out.sum().backward()
    assert torch.isfinite(a.grad).all() and a.grad.tolist() == [0.0, 2.0, 0.0, 0.0]
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    y = torch.randn(4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(log_add_exp, (x, y))


def test_categorical_kl_handles_zero_probabilities():
    log_q = torch.log(torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64))
    log_p = torch.log(torch.tensor([0.25, 0.75, 0.0], dtype=torch.float64)).requires_grad_()
    kl = categorical_kl(log_q, log_p)
    assert float(kl.detach()) == pytest.approx(0.5 * math.log(2) + 0.5 * math.log(2 / 3))
    kl.backward()
    assert torch.isfinite(log_p.grad).all() and log_p.grad.tolist() == [-0.5, -0.5, 0.0]
