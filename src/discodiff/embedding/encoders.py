r"""Encoders: token ids to vectors, the map :math:`w \mapsto e_w` that embedding diffusion runs on.

Every encoder is a table :math:`E \in \mathbb{R}^{K \times d}` (row :math:`e_k` is token k's
vector) and encodes a sequence position by position, :math:`x_0 = (e_{w_1}, \dots, e_{w_n})`:

- :class:`OneHotEncoder`: :math:`e_k = s\,\delta_k`, d = K, fixed (the simplex corners scaled by
  s). "The encoder and decoder can be as simple as a one-hot embedding and an argmax" (the reading
  list's discrete-diffusion notes).
- :class:`LearnedEncoder`: a free table trained jointly with the denoiser, initialized
  :math:`\mathcal N(0, \text{init\_std}^2)` as ``nn.Embedding`` (Diffusion-LM, Li et al. 2022,
  Sec. 4.1).
- :class:`NormalizedEncoder`: :math:`e_k = r\,v_k/\|v_k\|` with free :math:`v_k`; the radius
  :math:`r = \sqrt d` gives coordinates of unit mean square (CDCD, Dieleman et al. 2022, Sec. 3,
  embedding normalization: without it a cross-entropy objective inflates the embeddings, since
  larger norms mean less noise at every level).

``data_std`` is the root-mean-square coordinate of the table at initialization; the methods pass
it to the input scaling :math:`c_{in}` of the Gaussian preconditioner.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError


class TokenEncoder(nn.Module, ABC):
    """Token ids ``(B, n)`` long -> vectors ``(B, n, dim)``: a lookup in :meth:`table`."""

    vocab_size: int
    dim: int
    no_weight_decay = True  # an embedding table (discodiff.train.optim)

    @abstractmethod
    def table(self) -> Tensor:
        """The vector of every token, ``(vocab_size, dim)`` float (what :meth:`forward` looks up)."""

    @property
    @abstractmethod
    def data_std(self) -> float:
        """Root-mean-square coordinate of the table at initialization."""

    def forward(self, tokens: Tensor) -> Tensor:
        """``(B, n)`` long -> ``(B, n, dim)``."""
        return F.embedding(tokens, self.table())


class OneHotEncoder(TokenEncoder):
    r""":math:`e_k = s\,\delta_k \in \mathbb{R}^K`: fixed, no parameters; d = K, so meant for small
    vocabularies (the table is a ``K x K`` buffer)."""

    def __init__(self, vocab_size: int, *, scale: float = 1.0) -> None:
        super().__init__()
        if vocab_size < 2 or scale <= 0:
            raise ConfigError(
                f"one-hot encoder needs vocab_size >= 2 and scale > 0, got {vocab_size}, {scale}"
            )
        self.vocab_size = self.dim = vocab_size
        self.scale = scale
        self.register_buffer("corners", scale * torch.eye(vocab_size), persistent=False)

    def table(self) -> Tensor:
        return self.corners

    @property
    def data_std(self) -> float:
        return self.scale / math.sqrt(self.vocab_size)

    def forward(self, tokens: Tensor) -> Tensor:
        return self.scale * F.one_hot(tokens, self.vocab_size).float()


class LearnedEncoder(TokenEncoder):
    r"""A free table :math:`E`, initialized :math:`\mathcal N(0, \text{init\_std}^2)` (Diffusion-LM)."""

    def __init__(self, vocab_size: int, dim: int, *, init_std: float = 1.0) -> None:
        super().__init__()
        _check_sizes(vocab_size, dim)
        self.vocab_size, self.dim, self.init_std = vocab_size, dim, init_std
        self.weight = nn.Parameter(init_std * torch.randn(vocab_size, dim))

    def table(self) -> Tensor:
        return self.weight

    @property
    def data_std(self) -> float:
        return self.init_std


class NormalizedEncoder(TokenEncoder):
    r""":math:`e_k = r\,v_k/\|v_k\|_2` (CDCD); every row has norm exactly r (default :math:`\sqrt d`)."""

    def __init__(self, vocab_size: int, dim: int, *, radius: float | None = None) -> None:
        super().__init__()
        _check_sizes(vocab_size, dim)
        self.vocab_size, self.dim = vocab_size, dim
        self.radius = math.sqrt(dim) if radius is None else radius
        if self.radius <= 0:
            raise ConfigError(f"radius must be > 0, got {self.radius}")
        self.weight = nn.Parameter(torch.randn(vocab_size, dim))

    def table(self) -> Tensor:
        return self.radius * F.normalize(self.weight, dim=-1)

    @property
    def data_std(self) -> float:
        return self.radius / math.sqrt(self.dim)


def _check_sizes(vocab_size: int, dim: int) -> None:
    if vocab_size < 2 or dim < 1:
        raise ConfigError(f"an embedding needs vocab_size >= 2 and dim >= 1, got {vocab_size}, {dim}")


ENCODERS = ("learned", "normalized", "onehot")


def build_encoder(kind: str, vocab_size: int, *, dim: int, onehot_scale: float = 1.0) -> TokenEncoder:
    """``"learned"`` | ``"normalized"`` (width ``dim``) | ``"onehot"`` (width ``vocab_size``)."""
    if kind == "learned":
        return LearnedEncoder(vocab_size, dim)
    if kind == "normalized":
        return NormalizedEncoder(vocab_size, dim)
    if kind == "onehot":
        return OneHotEncoder(vocab_size, scale=onehot_scale)
    raise ConfigError(f"unknown encoder {kind!r}; allowed: {', '.join(ENCODERS)}")
