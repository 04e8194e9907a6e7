r"""The latent layout: how n token vectors become the m positions the diffusion runs on.

The reading list's encoder maps :math:`w = (w_1, \dots, w_n)` to :math:`x_0 \in \mathbb{R}^{m \times
d'}` and notes that the length may change (:math:`m \ne n`). Here the change is a fixed grouping:
``group`` = g consecutive token vectors are concatenated into one latent position,

.. math:: x_0[j] = (e_{w_{gj+1}}, \dots, e_{w_{gj+g}}) \in \mathbb{R}^{g d}, \qquad m = n / g,

so the denoiser attends over n/g positions of width g·d (g times cheaper attention) and every
formula of the Gaussian process, which acts coordinate-wise, is unchanged. Decoding splits each
position back into g token vectors; a decoder still reads one token's d coordinates. A learned
compressor (an encoder network mixing tokens) is not offered: it would break the exact
token-by-token rounding, clamping and infilling that the methods rely on.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ..errors import ConfigError


@dataclass(frozen=True)
class LatentLayout:
    """``length`` tokens of ``dim`` coordinates, grouped ``group`` to a latent position."""

    length: int  # n: tokens per example
    dim: int  # d: coordinates per token
    group: int = 1  # g: tokens per latent position (m = n / g)

    def __post_init__(self) -> None:
        if min(self.length, self.dim, self.group) < 1:
            raise ConfigError(f"need length, dim and group >= 1, got {self.length}, {self.dim}, {self.group}")
        if self.length % self.group:
            raise ConfigError(
                f"group ({self.group}) must divide the sequence length ({self.length}): "
                "each latent position holds exactly group tokens"
            )

    @property
    def positions(self) -> int:
        """m = n / g."""
        return self.length // self.group

    @property
    def event_shape(self) -> tuple[int, int]:
        """One latent example: ``(m, g * d)``."""
        return (self.positions, self.group * self.dim)

    def merge(self, per_token: Tensor) -> Tensor:
        """``(B, n, c)`` per-token values -> ``(B, m, g c)`` per latent position."""
        B, n, c = per_token.shape
        if n != self.length:
            raise ValueError(f"expected {self.length} tokens per example, got {n}")
        return per_token.reshape(B, self.positions, self.group * c)

    def split(self, per_position: Tensor) -> Tensor:
        """``(B, m, g c)`` per latent position -> ``(B, n, c)`` per token (inverse of :meth:`merge`)."""
        B, m, gc = per_position.shape
        if m != self.positions or gc % self.group:
            raise ValueError(
                f"expected (B, {self.positions}, group * c) with group={self.group}, "
                f"got {tuple(per_position.shape)}"
            )
        return per_position.reshape(B, self.length, gc // self.group)

    def expand_mask(self, token_mask: Tensor) -> Tensor:
        """``(B, n)`` bool per token -> ``(B, m, g d)`` bool per latent coordinate."""
        return self.merge(token_mask[..., None].expand(*token_mask.shape, self.dim))
