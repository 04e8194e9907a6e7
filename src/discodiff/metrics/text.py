"""Sample-quality metrics for token sequences."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..base import Batch, Method
from ..utils import LN2


def sample_entropy(samples: Tensor, vocab_size: int) -> float:
    r"""Mean over samples of the unigram entropy of each sample's tokens, in nats:
    :math:`-\sum_k \hat p_k \log \hat p_k` with :math:`\hat p` the token frequencies within one
    sample (as reported beside generative perplexity by Zheng et al. 2024 and Sahoo et al. 2025 to
    expose low-entropy, repetitive samples)."""
    x = samples.reshape(samples.shape[0], -1).long().cpu()
    counts = torch.zeros(x.shape[0], vocab_size, dtype=torch.float64)
    counts.scatter_add_(1, x, torch.ones_like(x, dtype=torch.float64))
    p = counts / x.shape[1]
    ent = -(p * torch.log(p.clamp_min(torch.finfo(torch.float64).tiny))).sum(1)
    return float(ent.mean())


def text_likelihood(nats: float, *, tokens: int, chars: int) -> dict[str, float]:
    r"""A total NLL of ``nats`` over ``tokens`` ids that decode to ``chars`` characters:
    bits per token :math:`\text{nats} / (\text{tokens} \ln 2)`, bits per character of the decoded
    text :math:`\text{nats} / (\text{chars} \ln 2)` (the same text costs the same bits under any
    tokenizer, so this compares across vocabularies) and perplexity per token
    :math:`\exp(\text{nats} / \text{tokens})`."""
    try:
        perplexity = math.exp(nats / tokens)
    except OverflowError:  # beyond e^709 per token: an untrained or diverged model
        perplexity = math.inf
    return {
        "bits_per_token": nats / tokens / LN2,
        "bits_per_char": nats / max(chars, 1) / LN2,
        "perplexity": perplexity,
    }


@torch.no_grad()
def generative_perplexity(reference: Method, samples: Tensor, *, batch_size: int) -> dict[str, float]:
    r"""Perplexity of ``samples`` under a reference model (e.g. the AR baseline trained on the same
    corpus): :math:`\exp(\sum \text{nll} / \sum \text{tokens})`, and the same in bits per token."""
    total_nats, total_dims = 0.0, 0.0
    for i in range(0, len(samples), batch_size):
        out = reference.nll(Batch(samples[i : i + batch_size].to(reference.device)))
        total_nats += float(out.nll.double().sum())
        total_dims += float(out.num_dims.double().sum())
    per_token = total_nats / total_dims
    return {"gen_ppl": math.exp(per_token), "gen_bits_per_token": per_token / math.log(2)}
