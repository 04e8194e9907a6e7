"""The shared categorical helpers (Gumbel-max in float64 + sharpen) as the AR baseline uses them:
frequencies, temperature, nucleus, errors."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import chisquare

from discodiff.categorical.sampling import sample_categorical as gumbel_max
from discodiff.categorical.sampling import sharpen


def sample_categorical(logits, *, generator=None, temperature=1.0, top_p=1.0):
    log_p = torch.log_softmax(logits.double(), dim=-1)
    return gumbel_max(sharpen(log_p, temperature=temperature, top_p=top_p), generator=generator)


def top_p_filter(log_probs, top_p):
    return sharpen(log_probs, top_p=top_p)


CHI2_LEVEL = 1e-3  # reject only at p < 0.001
N = 100_000


def draw_counts(logits: torch.Tensor, seed: int = 0, **options) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = sample_categorical(logits.expand(N, -1), generator=g, **options)
    assert x.shape == (N,) and x.dtype == torch.long
    return torch.bincount(x, minlength=logits.shape[-1])


def assert_matches(counts: torch.Tensor, probs: torch.Tensor) -> None:
    keep = probs > 0
    assert counts[~keep].sum() == 0
    assert (
        chisquare(counts[keep].numpy(), (probs[keep] / probs[keep].sum() * counts.sum()).numpy()).pvalue
        > CHI2_LEVEL
    )


def test_frequencies_match_softmax() -> None:
    logits = torch.tensor([1.0, -0.5, 2.0, 0.0, -torch.inf])
    assert_matches(draw_counts(logits), torch.softmax(logits.double(), -1))


def test_temperature() -> None:
    logits = torch.tensor([1.0, -0.5, 2.0, 0.0])
    assert_matches(draw_counts(logits, temperature=0.5), torch.softmax(logits.double() / 0.5, -1))


def test_top_p_keeps_the_nucleus() -> None:
    probs = torch.tensor([0.3, 0.5, 0.05, 0.15], dtype=torch.float64)
    # sorted: 0.5, 0.3 (mass before 0.5 < 0.8: kept), 0.15 (mass before 0.8: dropped), 0.05
    filtered = top_p_filter(probs.log(), 0.8)
    assert torch.isinf(filtered).tolist() == [False, False, True, True]
    torch.testing.assert_close(filtered.exp()[:2], torch.tensor([0.375, 0.625], dtype=torch.float64))
    assert_matches(
        draw_counts(probs.log(), top_p=0.8), torch.tensor([0.375, 0.625, 0.0, 0.0], dtype=torch.float64)
    )
    assert torch.isfinite(top_p_filter(probs.log(), 1e-9)).tolist() == [False, True, False, False]
    assert top_p_filter(probs.log(), 1.0).equal(probs.log())


def test_seeded_draws_repeat_and_batch_dims_work() -> None:
    logits = torch.randn(4, 3, 50)
    a = sample_categorical(logits, generator=torch.Generator().manual_seed(3))
    b = sample_categorical(logits.bfloat16(), generator=torch.Generator().manual_seed(3))
    assert a.shape == (4, 3)
    assert a.equal(sample_categorical(logits, generator=torch.Generator().manual_seed(3)))
    assert (a == b).float().mean() > 0.8  # bf16 logits round, the noise is the same


def test_errors() -> None:
    with pytest.raises(ValueError, match="NaN"):
        sample_categorical(torch.tensor([0.0, float("nan")]))
    with pytest.raises(ValueError, match="temperature"):
        sample_categorical(torch.zeros(3), temperature=-1.0)
    with pytest.raises(ValueError, match="top_p"):
        sample_categorical(torch.zeros(3), top_p=1.5)
