r"""Decoders: from vectors back to tokens, position by position.

A decoder gives two things for token-layout vectors ``x`` (B, n, d):

- :meth:`Decoder.log_probs`: the rounding distribution :math:`\log p(w_i \mid x_i)` (B, n, K) read
  at a noisy :math:`x_t = \alpha e_w + \sigma\epsilon` (the first latent of the chain); its
  cross-entropy is Diffusion-LM's rounding term :math:`-\log p_\theta(w \mid x_0)` and enters the
  likelihood bound;
- :meth:`Decoder.decode`: the token of a clean estimate :math:`\hat x_0`, used to turn a generated
  sample into text: the nearest embedding (Diffusion-LM rounds its samples by nearest neighbour,
  Li et al. 2022, Sec. 4.2; the head is trained on noisy inputs only).

Three decoders:

- :class:`HeadDecoder`: a classification head :math:`\mathrm{softmax}(W x + b)`; by default
  :math:`W = E`, the embedding table (Diffusion-LM's rounding head shares the embedding's weights,
  Li et al. 2022, Sec. 4.1), else a free matrix.
- :class:`NearestDecoder`: the Bayes posterior of a position under a uniform prior,
  :math:`p(w_i = k \mid x_i) \propto \mathcal N(x_i; \alpha e_k, \sigma^2 I)
  \propto \exp\big((\alpha x_i^\top e_k - \tfrac12\alpha^2\|e_k\|^2)/\sigma^2\big)`; its mode for a
  clean estimate is the nearest embedding.
- :class:`ArgmaxDecoder`: for a one-hot table :math:`e_k = s\delta_k`, the nearest embedding is
  the largest coordinate, :math:`\arg\max_k x_k`, and the posterior above is
  :math:`\mathrm{softmax}(\alpha s x/\sigma^2)`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..utils import append_dims
from .rounding import nearest_index


class Decoder(nn.Module, ABC):
    """Vectors ``(B, n, d)`` -> token distributions and tokens; ``table`` is the encoder's ``(K, d)``."""

    @abstractmethod
    def log_probs(self, x: Tensor, table: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
        r""":math:`\log p(w_i \mid x_i)`, (B, n, K) float32, for :math:`x = \alpha e_w + \sigma\epsilon`;
        ``alpha``, ``sigma``: (B,)."""

    @abstractmethod
    def decode(self, x: Tensor, table: Tensor) -> Tensor:
        r"""The token of each clean estimate :math:`\hat x_0`: ``(B, n, d)`` -> ``(B, n)`` long."""


class HeadDecoder(Decoder):
    """``softmax(x W^T + b)``; ``W`` is the embedding table when ``tied``, else a free parameter.

    The head is trained at one noise level (the first latent), so it ignores ``alpha`` and ``sigma``;
    a clean estimate decodes to its nearest embedding.
    """

    def __init__(self, vocab_size: int, dim: int, *, tied: bool = True) -> None:
        super().__init__()
        self.tied = tied
        self.bias = nn.Parameter(torch.zeros(vocab_size))
        self.weight = None if tied else nn.Parameter(torch.randn(vocab_size, dim) / dim**0.5)

    def logits(self, x: Tensor, table: Tensor) -> Tensor:
        weight = table if self.weight is None else self.weight
        return (x.float() @ weight.float().T) + self.bias.float()

    def log_probs(self, x: Tensor, table: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
        return torch.log_softmax(self.logits(x, table), dim=-1)

    def decode(self, x: Tensor, table: Tensor) -> Tensor:
        return nearest_index(x, table)


class NearestDecoder(Decoder):
    r"""Gaussian posterior per position; mode of a clean estimate = nearest embedding. No parameters."""

    def log_probs(self, x: Tensor, table: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
        x, table = x.float(), table.float()
        a, var = append_dims(alpha, x), append_dims(sigma**2, x)
        logits = (a * (x @ table.T) - 0.5 * a**2 * (table**2).sum(dim=-1)) / var
        return torch.log_softmax(logits, dim=-1)

    def decode(self, x: Tensor, table: Tensor) -> Tensor:
        return nearest_index(x, table)


class ArgmaxDecoder(NearestDecoder):
    r"""For one-hot tables only: the mode is :math:`\arg\max_k x_k` (= the nearest corner)."""

    def decode(self, x: Tensor, table: Tensor) -> Tensor:
        return x.argmax(dim=-1)


DECODERS = ("head", "nearest", "argmax")


def build_decoder(kind: str, vocab_size: int, *, dim: int, tied: bool = True) -> Decoder:
    """``"head"`` (tied or free weights) | ``"nearest"`` | ``"argmax"`` (one-hot encoders only)."""
    if kind == "head":
        return HeadDecoder(vocab_size, dim, tied=tied)
    if kind == "nearest":
        return NearestDecoder()
    if kind == "argmax":
        return ArgmaxDecoder()
    raise ConfigError(f"unknown decoder {kind!r}; allowed: {', '.join(DECODERS)}")
