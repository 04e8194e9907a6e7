"""What the embedding methods share: tokens to latents, class labels, and known tokens for
infilling. Each method adds its own process, loss, bound and sampler on top."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..base import Batch, Method, drop_labels, sample_labels
from ..categorical.validation import check_known_tokens, check_tokens
from ..errors import ConfigError
from .encoders import TokenEncoder
from .layout import LatentLayout


@dataclass
class KnownTokens:
    """Infilling constraints in token and latent form.

    Attributes:
        tokens: ``(N, n)`` long known ids (0 where unknown).
        mask: ``(N, n)`` bool, True where known.
        latent: ``(N, m, g d)`` their embeddings (the clean values the sampler re-imposes).
        latent_mask: ``(N, m, g d)`` bool, the mask per latent coordinate.
    """

    tokens: Tensor
    mask: Tensor
    latent: Tensor
    latent_mask: Tensor


class EmbeddingMethod(Method):
    """Token data diffused as embeddings: a network, an encoder and a latent layout.

    Known tokens are embedded and re-imposed on the latent at every step, noised to the current
    time (replacement), then placed exactly in the decoded tokens.

    Args:
        net: ``net(x, t, cond)`` on latent inputs ``(B, m, channels)``.
        encoder: token ids -> vectors.
        layout: how token vectors group into latent positions.
        num_classes: number of class labels (0: unconditional).
        cond_drop_prob: label dropout for classifier-free guidance.
    """

    representation = "tokens"
    known_semantics = "replacement"

    def __init__(
        self,
        net: Callable,
        encoder: TokenEncoder,
        layout: LatentLayout,
        *,
        num_classes: int = 0,
        cond_drop_prob: float = 0.0,
    ) -> None:
        super().__init__()
        if layout.dim != encoder.dim:
            raise ConfigError(f"layout width {layout.dim} differs from the encoder's {encoder.dim}")
        self.net = net
        self.encoder = encoder
        self.layout = layout
        self.vocab_size = encoder.vocab_size
        self.event_shape = (layout.length,)
        self.num_classes = num_classes
        self.cond_drop_prob = cond_drop_prob

    def check_batch(self, batch: Batch) -> Tensor:
        """The batch's tokens ``(B, n)`` long, after checking ids, shape and labels."""
        tokens = check_tokens(batch.x, num_ids=self.vocab_size, event_shape=self.event_shape, what="batch.x")
        if self.num_classes > 0 and batch.cond is None:
            raise ValueError("this model is class-conditional: the batch needs labels")
        return tokens

    def embed(self, tokens: Tensor) -> Tensor:
        """Clean latent :math:`x_0`: ``(B, n)`` long -> ``(B, m, g d)``."""
        return self.layout.merge(self.encoder(tokens))

    def train_labels(self, batch: Batch) -> Tensor | None:
        """Labels with dropout to the null class (randomness from ``batch.rand``)."""
        return drop_labels(batch, self.cond_drop_prob)

    def sample_labels(self, cond: Tensor | None, n: int, device: torch.device) -> Tensor | None:
        """Checked labels for sampling; the null class for a conditional model given none."""
        return sample_labels(cond, n, self.num_classes, device)

    def known_tokens(
        self, known: Tensor | None, known_mask: Tensor | None, shape: tuple[int, ...], device: torch.device
    ) -> KnownTokens | None:
        """Check ``known`` ids (where ``known_mask``) and embed them; ``None`` without infilling."""
        pair = check_known_tokens(known, known_mask, shape, self.vocab_size, device)
        if pair is None:
            return None
        tokens, mask = pair
        with torch.no_grad():
            latent = self.embed(tokens)
        return KnownTokens(tokens, mask, latent, self.layout.expand_mask(mask))

    @staticmethod
    def impose(tokens: Tensor, known: KnownTokens | None) -> Tensor:
        """The known ids at their positions, exactly."""
        return tokens if known is None else torch.where(known.mask, known.tokens, tokens)
