r"""A causal lookup table over short sequences: one free output vector per position and prefix.

Tran et al.'s toy experiment (2019, Sec. 4.1; edward2's ``EmbeddingNetwork``) conditions a
discrete autoregressive flow on a table that "uniquely embeds each combination" of the earlier
values, instead of a shared network. On the quantized ring (K = 91, L = 2) the flow's
straight-through gradients find the shift of each row of the table on their own, whereas a
transformer or an MLP of the same inputs stays near the best factorized model (measured in
``configs/toy2d/discrete_flow.yaml``'s notes): with shared weights, every row's gradient pulls
the shared parameters toward the identity, which is a stationary point once the base has fitted
the marginals.

Inputs are one-hot (or any) vectors ``(B, L, V)``; each position's id is its argmax (so no
gradient reaches the inputs: the table looks values up). The output at position d is row
:math:`\sum_{j \le d} v_j V^j` of the table of position d, i.e. a free vector for every prefix
:math:`(v_0, \dots, v_d)`. The table has :math:`\sum_d V^{d+1}` rows, so it is for short
sequences only (at most :data:`MAX_ROWS` rows). Time and labels are not inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from .base import NETS, NetSpec

MAX_ROWS = 1 << 22
"""Largest table (rows over all positions); about 4 M rows x the output width."""


@dataclass
class LookupConfig:
    """``net: {name: lookup, init_scale: 0.05}``."""

    init_scale: float = 0.05  # entries start uniform in [-init_scale, init_scale] (Keras' default)

    def __post_init__(self) -> None:
        if self.init_scale < 0:
            raise ValueError(f"init_scale must be >= 0, got {self.init_scale}")


class CausalLookup(nn.Module):
    """See the module docstring. Args: ``length`` L, ``vocab`` V (input width), ``out``."""

    def __init__(self, length: int, vocab: int, out: int, init_scale: float) -> None:
        super().__init__()
        self.length, self.vocab = length, vocab
        sizes = [vocab ** (d + 1) for d in range(length)]
        offsets = torch.tensor([sum(sizes[:d]) for d in range(length)])
        self.register_buffer("offsets", offsets, persistent=False)
        self.register_buffer("powers", vocab ** torch.arange(length), persistent=False)
        self.table = nn.Embedding(self.rows(length, vocab), out)
        nn.init.uniform_(self.table.weight, -init_scale, init_scale)

    @staticmethod
    def rows(length: int, vocab: int) -> int:
        """Table rows for ``length`` positions of ``vocab`` values: one per prefix."""
        return sum(vocab ** (d + 1) for d in range(length))

    def forward(self, x: Tensor, t: Tensor | None = None, cond: Tensor | None = None) -> Tensor:
        """``(B, L', V)`` inputs (L' <= L, the first L' positions) -> ``(B, L', out)``."""
        if cond is not None:
            raise ValueError("the lookup network takes no labels")
        if x.dim() != 3 or x.shape[2] != self.vocab or x.shape[1] > self.length:
            raise ValueError(
                f"lookup input must be (B, <= {self.length}, {self.vocab}), got {tuple(x.shape)}"
            )
        ids = x.argmax(dim=-1)  # (B, L')
        n = ids.shape[1]
        prefix = torch.cumsum(ids * self.powers[:n], dim=1)  # id of (v_0..v_d) at position d
        return self.table(prefix + self.offsets[:n])


@NETS.register("lookup", config=LookupConfig)
def build_lookup(config: LookupConfig, spec: NetSpec) -> CausalLookup:
    if not spec.causal or spec.input_vocab is not None or len(spec.event_shape) != 2:
        raise ConfigError(
            "net 'lookup' is a causal network over (L, V) vector inputs: it serves the "
            "autoregressive layers of method 'discrete_flow' (coupling layers need net 'transformer')"
        )
    if spec.num_classes > 0:
        raise ConfigError("net 'lookup' takes no class labels (the data set has labels)")
    length, vocab = spec.event_shape
    rows = CausalLookup.rows(length, vocab)
    if rows > MAX_ROWS:
        raise ConfigError(
            f"net 'lookup' needs a table of {rows:,} rows for {length} positions of {vocab} values "
            f"(at most {MAX_ROWS:,}): use net 'transformer' for longer sequences"
        )
    return CausalLookup(length, vocab, spec.out_channels, config.init_scale)
