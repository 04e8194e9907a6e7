"""The quantized ring of Gaussians: its exact table against draws, and its metrics."""

from __future__ import annotations

import math

import torch

from discodiff.data.toy2d_discrete import DiscreteRing, DiscreteRingConfig


def test_exact_table_is_normalized_and_matches_draws():
    data = DiscreteRing(DiscreteRingConfig())
    log_p = data.log_pmf()
    assert log_p.shape == (91, 91)
    assert abs(float(log_p.exp().sum()) - 1) < 1e-12
    x = data.sample(400_000, torch.Generator().manual_seed(0))
    assert int(x.min()) >= 0 and int(x.max()) <= 90
    counts = torch.bincount(x[:, 0] * 91 + x[:, 1], minlength=91 * 91).double()
    # the cross-entropy of the draws under the table is the entropy (standard error ~ 0.002 nats)
    seen = counts > 0  # cells far from every mode underflow to probability 0 in float64
    assert bool(torch.isfinite(log_p.flatten()[seen]).all())
    cross_entropy = float(-(counts[seen] * log_p.flatten()[seen]).sum() / counts.sum())
    assert abs(cross_entropy - data.entropy()) < 0.01
    assert 0.5 * float((counts / counts.sum() - log_p.exp().flatten()).abs().sum()) < 0.025


def test_entropy_and_metrics_and_a_different_grid():
    data = DiscreteRing(DiscreteRingConfig())
    assert abs(data.entropy() / 2 / math.log(2) - 4.5589) < 1e-4  # bits per dim, stated in the docs
    metrics = data.sample_metrics(data.split("test")[0][:5000])
    assert metrics["tv"] < 0.2 and abs(metrics["tv"] - metrics["tv_data_floor"]) < 0.03
    small = DiscreteRing(DiscreteRingConfig(levels=31, components=4, std=0.2))
    assert small.info.vocab_size == 31 and abs(float(small.log_pmf().exp().sum()) - 1) < 1e-12
