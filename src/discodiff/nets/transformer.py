r"""A sequence transformer over tokens or vectors, bidirectional or causal.

One network serves two uses, chosen by :attr:`NetSpec.causal`:

- **diffusion denoiser** (``causal=False``): every position attends to every position; the time
  ``t`` (and an optional class label) drives every block through adaptive LayerNorm, adaLN-Zero
  (Peebles & Xie 2023, Sec. 3.2; SEDD's DDiT uses the same block):
  :math:`h \mathrel{+}= g \odot F(\mathrm{LN}(h)(1 + s) + b)` with :math:`(b, s, g)` a linear
  function of :math:`\mathrm{SiLU}(c)`, zero at initialization;
- **autoregressive model** (``causal=True``): position i attends to positions <= i. The network
  has no time input (``t`` is accepted and ignored: an AR model sees clean data, t = 0); a class
  label, if any, drives adaLN as above. Incremental decoding goes through a :class:`KVCache`.

Inputs, ``x``:

- tokens, when ``NetSpec.input_vocab`` is set: ``(B, L)`` long in ``[0, input_vocab)`` (the
  vocabulary counts any [MASK] or BOS id), looked up in an embedding table;
- vectors, when ``input_vocab is None`` and ``event_shape == (L, d_in)``: ``(B, L, d_in)`` float,
  projected in by a linear layer. Embedding diffusion (Diffusion-LM, CDCD) feeds its noisy
  embeddings this way; self-conditioning concatenates the previous estimate, doubling ``d_in``.

Output: ``(B, L, out_channels)`` for both (channels last, per position): logits or vectors.

Positions: rotary embeddings on queries and keys (RoPE, Su et al. 2021, Sec. 3.4.2, in the
half-split form of GPT-NeoX), or learned absolute positions (GPT-2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..state import check_id_range
from .adaln import gated_add, modulate
from .attention import KVCache, RopeTables, SelfAttention
from .base import NETS, LabelEmbedding, NetSpec, timestep_embedding
from .one_hot import OneHotLinear

INIT_STD = 0.02
"""Standard deviation of the initial weights (GPT-2; nanoGPT's ``_init_weights``)."""


@dataclass
class TransformerConfig:
    """``net: {name: transformer, width: 256, depth: 4, heads: 4}``."""

    width: int = 256  # model dimension
    depth: int = 4  # number of blocks
    heads: int = 4  # attention heads; must divide width
    mlp_ratio: int = 4  # hidden width of each MLP = mlp_ratio * width
    cond_dim: int = 128  # width of the time/label vector that drives adaLN
    time_dim: int = 256  # size of the sinusoidal time embedding
    positions: Literal["rope", "learned"] = "rope"  # rotary (any length) or learned absolute
    rope_base: float = 10_000.0  # RoPE base of the angle frequencies (Su et al. 2021)
    max_len: int | None = None  # longest sequence for learned positions; None: the event length
    dropout: float = 0.0  # residual and attention dropout
    gelu: Literal["exact", "tanh"] = "exact"  # MLP activation: erf GELU, or GPT-2's tanh approximation

    def __post_init__(self) -> None:
        if min(self.width, self.depth, self.heads, self.mlp_ratio, self.cond_dim) < 1:
            raise ValueError("transformer needs width, depth, heads, mlp_ratio and cond_dim >= 1")
        if self.width % self.heads:
            raise ValueError(f"width ({self.width}) must be divisible by heads ({self.heads})")
        if self.positions == "rope" and (self.width // self.heads) % 2:
            raise ValueError(f"RoPE needs an even head size; width / heads = {self.width // self.heads}")
        if self.time_dim < 2 or self.rope_base <= 1:
            raise ValueError("time_dim must be >= 2 and rope_base > 1")
        if self.max_len is not None and self.max_len < 1:
            raise ValueError(f"max_len must be >= 1 or null, got {self.max_len}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class MLP(nn.Module):
    """``W2 GELU(W1 h)`` with hidden width ``ratio * width``; ``gelu="exact"`` (Hendrycks & Gimpel
    2016, with erf) costs 0.6x (fp32) and 0.35x (bf16) of the tanh approximation's forward +
    backward on the development CPU."""

    def __init__(self, width: int, ratio: int, gelu: str = "exact") -> None:
        super().__init__()
        self.fc = nn.Linear(width, ratio * width, bias=False)
        self.proj = nn.Linear(ratio * width, width, bias=False)
        self.approximate = "none" if gelu == "exact" else gelu

    def forward(self, h: Tensor) -> Tensor:
        return self.proj(F.gelu(self.fc(h), approximate=self.approximate))


class Block(nn.Module):
    """Pre-norm block: attention then MLP, each ``h += F(LN(h))``; with a conditioning vector the
    LayerNorms are modulated and the branches gated (adaLN-Zero)."""

    def __init__(self, config: TransformerConfig, conditioned: bool) -> None:
        super().__init__()
        d = config.width
        self.norm1 = nn.LayerNorm(d, elementwise_affine=not conditioned)
        self.attn = SelfAttention(d, config.heads, config.dropout, rope=config.positions == "rope")
        self.norm2 = nn.LayerNorm(d, elementwise_affine=not conditioned)
        self.mlp = MLP(d, config.mlp_ratio, config.gelu)
        self.drop = nn.Dropout(config.dropout)
        self.modulation = nn.Linear(config.cond_dim, 6 * d) if conditioned else None

    def forward(
        self,
        h: Tensor,
        c: Tensor | None,
        rope: Tensor | None,
        causal: bool,
        cache: KVCache | None,
        layer: int,
    ) -> Tensor:
        if self.modulation is None:
            h = h + self.drop(self.attn(self.norm1(h), rope, causal, cache, layer))
            return h + self.drop(self.mlp(self.norm2(h)))
        # c: (B, cond_dim), already through SiLU -> six (B, 1, d) modulations
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.modulation(c)[:, None].chunk(6, dim=-1)
        a = self.attn(modulate(self.norm1(h), shift_a, scale_a), rope, causal, cache, layer)
        h = gated_add(h, gate_a, self.drop(a))
        return gated_add(h, gate_m, self.drop(self.mlp(modulate(self.norm2(h), shift_m, scale_m))))


class Transformer(nn.Module):
    """``net(x, t, cond) -> (B, L, out_channels)``; see the module docstring."""

    def __init__(self, spec: NetSpec, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.causal = spec.causal
        self.input_vocab = spec.input_vocab
        self.time_dim = config.time_dim
        self.length = _check_event_shape(spec)
        if config.max_len is not None and config.max_len < self.length:
            raise ConfigError(
                f"max_len={config.max_len} is shorter than the data's sequences of {self.length} "
                "positions; raise net.max_len or lower data.seq_len"
            )
        d = config.width
        if spec.input_vocab is not None:
            self.embed: nn.Module = nn.Embedding(spec.input_vocab, d)
            self.d_in = None
        else:
            self.d_in = spec.event_shape[1]
            self.embed = (OneHotLinear if spec.one_hot_inputs else nn.Linear)(self.d_in, d)
        self.max_len = config.max_len or self.length
        self.pos = nn.Embedding(self.max_len, d) if config.positions == "learned" else None
        self.rope = RopeTables(d // config.heads, config.rope_base) if self.pos is None else None
        self.drop = nn.Dropout(config.dropout)
        self.time = None
        if not spec.causal:
            self.time = nn.Sequential(
                nn.Linear(config.time_dim, config.cond_dim),
                nn.SiLU(),
                nn.Linear(config.cond_dim, config.cond_dim),
            )
        self.label = LabelEmbedding(spec.num_classes, config.cond_dim) if spec.num_classes > 0 else None
        conditioned = self.time is not None or self.label is not None
        self.blocks = nn.ModuleList(Block(config, conditioned) for _ in range(config.depth))
        self.norm_out = nn.LayerNorm(d, elementwise_affine=not conditioned)
        self.modulation_out = nn.Linear(config.cond_dim, 2 * d) if conditioned else None
        self.head = nn.Linear(d, spec.out_channels)
        self._init_weights()

    def _init_weights(self) -> None:
        """GPT-2 initialization: N(0, 0.02) weights, residual projections scaled by
        1/sqrt(2 depth); adaLN modulations and the output head start at zero (DiT's adaLN-Zero),
        so the network starts as the identity on the residual stream and predicts zeros."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=INIT_STD)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        for block in self.blocks:
            for proj in (block.attn.proj, block.mlp.proj):
                nn.init.normal_(proj.weight, std=INIT_STD / math.sqrt(2 * self.config.depth))
        for linear in [b.modulation for b in self.blocks] + [self.modulation_out, self.head]:
            if linear is not None:
                nn.init.zeros_(linear.weight)
                nn.init.zeros_(linear.bias)

    def init_cache(self, capacity: int | None = None) -> KVCache:
        """An empty :class:`KVCache` for incremental decoding (causal networks only); the
        capacity defaults to ``max_len``."""
        if not self.causal:
            raise ValueError("a KV cache needs a causal network (NetSpec.causal=True)")
        return KVCache(self.config.depth, capacity or self.max_len)

    def forward(
        self, x: Tensor, t: Tensor | None = None, cond: Tensor | None = None, *, cache: KVCache | None = None
    ) -> Tensor:
        """Logits (or vectors) ``(B, L, out_channels)`` for inputs ``x`` (B, L) long or
        (B, L, d_in) float; ``t`` (B,) in [0, 1] (ignored by causal networks); ``cond`` (B,) long.

        With a ``cache`` (causal networks), ``x`` holds only the new positions, which follow the
        ``cache.length`` already cached, and the cache advances by L. Token ids and labels are
        checked at the first call with a cache; later calls (one per decoded token, with ids the
        sampler drew) reuse that call's conditioning and skip the id-range check and its host
        synchronization.
        """
        B, L = x.shape[:2]
        if cache is not None and not self.causal:
            raise ValueError("a KV cache needs a causal network (NetSpec.causal=True)")
        self._check_input(x, values=cache is None or cache.length == 0)
        start = 0 if cache is None else cache.length
        h = self.embed(x)  # (B, L, d)
        rope = None
        if self.pos is not None:
            if start + L > self.max_len:
                raise ValueError(f"sequence of {start + L} positions exceeds max_len={self.max_len}")
            h = h + self.pos(torch.arange(start, start + L, device=x.device))
        else:  # (L, 1, 1, hs / 2) complex rotations
            rope = self.rope.get(start, L, x.device)
        if cache is None or cache.length == 0:
            c = self._conditioning(t, cond, B, x.device)  # (B, cond_dim) or None
            if cache is not None:
                cache.conditioning = c  # a causal network's c depends on the labels only
        else:
            c = cache.conditioning
        h = self.drop(h)
        for i, block in enumerate(self.blocks):
            h = block(h, c, rope, self.causal, cache, i)
        if cache is not None:
            cache.length += L
        h = self.norm_out(h)
        if self.modulation_out is not None:
            shift, scale = self.modulation_out(c)[:, None].chunk(2, dim=-1)  # (B, 1, d) each
            h = modulate(h, shift, scale)
        return self.head(h)  # (B, L, out_channels)

    def _conditioning(
        self, t: Tensor | None, cond: Tensor | None, B: int, device: torch.device
    ) -> Tensor | None:
        """``SiLU(MLP(emb(t)) + label(cond))`` (B, cond_dim), or ``None`` without conditioning."""
        if cond is not None and self.label is None:
            raise ValueError("this network is unconditional (num_classes = 0): cond must be None")
        c = None
        if self.time is not None:
            if t is None or t.shape != (B,):
                got = None if t is None else tuple(t.shape)
                raise ValueError(f"this network is time-conditioned: t must have shape ({B},), got {got}")
            c = self.time(timestep_embedding(t, self.time_dim))
        if self.label is not None:
            label = self.label(cond, B, device)
            c = label if c is None else c + label
        return None if c is None else F.silu(c)

    def _check_input(self, x: Tensor, *, values: bool) -> None:
        """Shape and dtype; with ``values``, also the id range (one host synchronization)."""
        if self.input_vocab is not None:
            if x.dim() != 2 or x.dtype != torch.long:
                raise ValueError(f"token input must be (B, L) long, got {x.dtype} {tuple(x.shape)}")
            if values:
                check_id_range(x, self.input_vocab, "the network's token input")
        elif x.dim() != 3 or not x.is_floating_point() or x.shape[2] != self.d_in:
            raise ValueError(
                f"vector input must be (B, L, {self.d_in}) float, got {x.dtype} {tuple(x.shape)}"
            )


def _check_event_shape(spec: NetSpec) -> int:
    """The sequence length of ``spec``, after checking its event shape fits this network."""
    shape = spec.event_shape
    if spec.input_vocab is not None and len(shape) != 1:
        raise ConfigError(f"net 'transformer' takes token sequences of event shape (L,), got {shape}")
    if spec.input_vocab is None and len(shape) != 2:
        raise ConfigError(
            f"net 'transformer' takes tokens (event shape (L,) with NetSpec.input_vocab) or vector "
            f"sequences (event shape (L, d_in)), got event shape {shape} without a vocabulary"
        )
    if spec.input_vocab is not None and spec.input_vocab < 1:
        raise ConfigError(f"NetSpec.input_vocab must be >= 1, got {spec.input_vocab}")
    return shape[0]


@NETS.register("transformer", config=TransformerConfig)
def build_transformer(config: TransformerConfig, spec: NetSpec) -> Transformer:
    return Transformer(spec, config)
