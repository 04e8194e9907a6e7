"""What a method asks of its network (:class:`NetSpec`), the network registry, and the shared
time and label embeddings. Networks hold no diffusion math: they map ``(x_t, t, cond)`` to a raw
tensor that the method's parameterization interprets."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..base import NULL_LABEL
from ..registry import Registry

NETS: Registry[Callable[..., nn.Module]] = Registry("network")
"""Network builders: ``build(config, spec: NetSpec) -> nn.Module``."""

TIME_SCALE = 1000.0
"""t in [0, 1] is scaled by this before the sinusoidal embedding, so frequencies match DDPM's
integer timesteps 0..999 (Ho et al. 2020, App. B)."""


@dataclass(frozen=True)
class NetSpec:
    """The network a method needs.

    Attributes:
        event_shape: shape of one input ``x_t`` (without the batch dimension).
        out_channels: continuous inputs: channels of the output along dim 1 (the output has the
            input's shape otherwise); token inputs: logits per position, output ``(B, L, out)``.
        num_classes: > 0 for class-conditional networks, which also learn a null class
            (label -1 or ``cond=None``).
        input_vocab: token inputs: number of input ids (including any [MASK]); ``None`` for
            continuous inputs.
        causal: autoregressive networks attend only to earlier positions.
        one_hot_inputs: vector inputs whose rows are exactly one-hot (a discrete flow's states,
            with straight-through gradients); a network may read them as ids
            (:class:`~discodiff.nets.one_hot.OneHotLinear`) and must still return their gradient.
    """

    event_shape: tuple[int, ...]
    out_channels: int
    num_classes: int = 0
    input_vocab: int | None = None
    causal: bool = False
    one_hot_inputs: bool = False


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """Sinusoidal embedding of ``t * TIME_SCALE`` (Vaswani et al. 2017; Ho et al. 2020): (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = (t.float() * TIME_SCALE)[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return nn.functional.pad(emb, (0, dim % 2))


class LabelEmbedding(nn.Module):
    """Class embedding with one extra row for the null class (classifier-free guidance)."""

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.table = nn.Embedding(num_classes + 1, dim)

    def forward(self, cond: Tensor | None, batch: int, device: torch.device) -> Tensor:
        if cond is None:
            idx = torch.full((batch,), self.num_classes, dtype=torch.long, device=device)
        else:
            if cond.shape != (batch,):
                raise ValueError(f"labels must have shape ({batch},), got {tuple(cond.shape)}")
            bad = (cond < NULL_LABEL) | (cond >= self.num_classes)
            if bad.any():
                raise ValueError(
                    f"label {int(cond[bad][0])} out of range: allowed 0..{self.num_classes - 1} "
                    f"or {NULL_LABEL} (null)"
                )
            idx = torch.where(cond == NULL_LABEL, self.num_classes, cond)
        return self.table(idx)
