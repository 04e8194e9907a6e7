"""Encoders, decoders, rounding, clamping and the latent layout, against brute force."""

from __future__ import annotations

import math

import pytest
import torch

from discodiff.embedding import (
    ArgmaxDecoder,
    HeadDecoder,
    LatentLayout,
    LearnedEncoder,
    NearestDecoder,
    NormalizedEncoder,
    OneHotEncoder,
    build_decoder,
    build_encoder,
    clamp_to_nearest,
    nearest_index,
)
from discodiff.embedding import rounding as rounding_module

K, D = 11, 5


def brute_nearest(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """argmin_k ||x - e_k|| by explicit differences, float64."""
    diff = x.double()[..., None, :] - table.double()
    return (diff**2).sum(-1).argmin(-1)


@pytest.mark.parametrize(
    "encoder",
    [LearnedEncoder(K, D), NormalizedEncoder(K, D), OneHotEncoder(K, scale=3.0)],
    ids=["learned", "normalized", "onehot"],
)
def test_rounding_exact_embeddings_recovers_the_tokens(encoder) -> None:
    tokens = torch.randint(0, K, (4, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        vectors = encoder(tokens)
        table = encoder.table()
    assert vectors.shape == (4, 9, encoder.dim)
    assert nearest_index(vectors, table).equal(tokens)
    assert NearestDecoder().decode(vectors, table).equal(tokens)
    if isinstance(encoder, OneHotEncoder):
        assert ArgmaxDecoder().decode(vectors, table).equal(tokens)
    assert HeadDecoder(K, encoder.dim).decode(vectors, table).equal(tokens)


def test_clamping_maps_any_point_to_its_nearest_embedding(monkeypatch) -> None:
    g = torch.Generator().manual_seed(1)
    table = torch.randn(K, D, generator=g)
    points = 2 * torch.randn(3, 50, D, generator=g)
    expected = brute_nearest(points, table)
    monkeypatch.setattr(rounding_module, "NEAREST_CHUNK_ELEMENTS", 7 * K)  # several chunks of 7 rows
    clamped = clamp_to_nearest(points, table)
    torch.testing.assert_close(clamped, table[expected], rtol=0, atol=0)
    assert clamp_to_nearest(clamped, table).equal(clamped)  # idempotent: embeddings are fixed points
    # nothing in the table is closer than the clamped point
    dist = (points - clamped).norm(dim=-1)
    all_dist = (points[..., None, :] - table).norm(dim=-1)
    assert (dist <= all_dist.min(dim=-1).values + 1e-5).all()


def test_nearest_index_refuses_a_width_mismatch() -> None:
    with pytest.raises(ValueError, match="width 4 cannot be rounded to a table of width 5"):
        nearest_index(torch.zeros(2, 4), torch.zeros(K, D))


def test_nearest_decoder_is_the_gaussian_posterior() -> None:
    """p(w = k | x) under x = alpha e_w + sigma eps, uniform prior, by Bayes' rule on densities."""
    g = torch.Generator().manual_seed(2)
    table = torch.randn(K, D, generator=g)
    alpha, sigma = torch.tensor([0.9, 0.5]), torch.tensor([0.4, 0.8])
    x = torch.randn(2, 6, D, generator=g)
    log_p = NearestDecoder().log_probs(x, table, alpha.double(), sigma.double())
    dens = torch.distributions.Normal(alpha[:, None, None, None] * table, sigma[:, None, None, None])
    log_lik = dens.log_prob(x[:, :, None, :]).sum(-1)  # (2, 6, K)
    torch.testing.assert_close(log_p, torch.log_softmax(log_lik, -1), rtol=1e-4, atol=1e-4)


def test_argmax_decoder_posterior_is_a_softmax_of_coordinates() -> None:
    enc = OneHotEncoder(K, scale=2.0)
    x = torch.randn(3, 4, K)
    alpha, sigma = torch.full((3,), 0.8, dtype=torch.float64), torch.full((3,), 0.5, dtype=torch.float64)
    log_p = ArgmaxDecoder().log_probs(x, enc.table(), alpha, sigma)
    torch.testing.assert_close(log_p, torch.log_softmax(0.8 * 2.0 * x / 0.25, -1), rtol=1e-5, atol=1e-5)


def test_head_decoder_tied_and_free() -> None:
    enc = LearnedEncoder(K, D)
    tied, free = HeadDecoder(K, D), HeadDecoder(K, D, tied=False)
    x = torch.randn(2, 3, D)
    assert [n for n, _ in tied.named_parameters()] == ["bias"]
    torch.testing.assert_close(tied.logits(x, enc.table()), x @ enc.weight.T)
    assert free.weight.shape == (K, D)
    log_p = free.log_probs(x, enc.table(), torch.ones(2), torch.ones(2))
    torch.testing.assert_close(log_p.exp().sum(-1), torch.ones(2, 3))


def test_encoder_tables() -> None:
    norm = NormalizedEncoder(K, D)
    with torch.no_grad():
        norm.weight.mul_(torch.rand(K, 1) * 10)  # any raw scale
    torch.testing.assert_close(norm.table().norm(dim=-1), torch.full((K,), math.sqrt(D)))
    assert norm.data_std == pytest.approx(1.0)
    one_hot = OneHotEncoder(K, scale=3.0)
    assert list(one_hot.parameters()) == [] and one_hot.state_dict() == {}
    torch.testing.assert_close(one_hot(torch.tensor([[2]])), 3.0 * torch.eye(K)[2][None, None])
    assert one_hot.data_std == pytest.approx(3.0 / math.sqrt(K))
    assert LearnedEncoder(K, D).weight.requires_grad


def test_builders_name_the_allowed_values() -> None:
    with pytest.raises(ValueError, match="unknown encoder 'word2vec'; allowed: learned, normalized, onehot"):
        build_encoder("word2vec", K, dim=D)
    with pytest.raises(ValueError, match="unknown decoder 'beam'; allowed: head, nearest, argmax"):
        build_decoder("beam", K, dim=D)
    with pytest.raises(ValueError, match="vocab_size >= 2"):
        LearnedEncoder(1, D)
    assert isinstance(build_encoder("onehot", K, dim=D, onehot_scale=2.0), OneHotEncoder)


def test_layout_groups_tokens_into_positions() -> None:
    layout = LatentLayout(length=6, dim=2, group=3)
    assert layout.positions == 2 and layout.event_shape == (2, 6)
    per_token = torch.arange(24.0).reshape(2, 6, 2)
    latent = layout.merge(per_token)
    assert latent.shape == (2, 2, 6)
    torch.testing.assert_close(latent[0, 1], per_token[0, 3:6].reshape(-1))  # tokens 3, 4, 5
    assert layout.split(latent).equal(per_token)
    logits = torch.randn(2, 2, 3 * K)  # g K logits per latent position
    assert layout.split(logits).shape == (2, 6, K)
    mask = torch.tensor([[True, False, False, False, False, True]] * 2)
    expanded = layout.expand_mask(mask)
    assert expanded.shape == (2, 2, 6)
    assert layout.split(expanded).equal(mask[..., None].expand(2, 6, 2))


def test_layout_errors() -> None:
    with pytest.raises(ValueError, match=r"group \(4\) must divide the sequence length \(6\)"):
        LatentLayout(length=6, dim=2, group=4)
    with pytest.raises(ValueError, match="expected 6 tokens per example, got 5"):
        LatentLayout(length=6, dim=2).merge(torch.zeros(1, 5, 2))
