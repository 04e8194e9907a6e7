"""Input checks shared by the token methods: token tensors, known tokens and network logits."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..base import check_known
from ..state import check_id_range, checks_deferred


def check_tokens(x: Tensor, *, num_ids: int, event_shape: Sequence[int] | None, what: str) -> Tensor:
    """Refuse anything but integer ids in ``[0, num_ids)`` of shape ``(B, *event_shape)``; return long.

    Args:
        x: the tensor to check.
        num_ids: number of allowed ids.
        event_shape: expected shape of one example (``None``: any).
        what: the argument's name, for the error message.
    """
    if x.dtype in (torch.bool, torch.uint8) or x.is_floating_point() or x.is_complex():
        raise ValueError(f"{what} must hold integer token ids (torch.long), got dtype {x.dtype}")
    if event_shape is not None and (x.dim() < 1 or tuple(x.shape[1:]) != tuple(event_shape)):
        raise ValueError(
            f"{what} must have shape (B, {', '.join(map(str, event_shape))}), got {tuple(x.shape)}"
        )
    check_id_range(x, num_ids, what)  # one host synchronization (none in the trainer's step)
    return x.long()


def check_logits(logits: Tensor, *, expected: Sequence[int]) -> Tensor:
    """Check a network's logits: shape ``expected``, no NaN or +inf (``-inf`` = zero probability).

    The value check is one reduction (NaN propagates through the maximum) and runs where autograd
    is off (sampling, likelihood) outside the trainer's step. In training it is left to the
    trainer's finiteness check of the loss, which a NaN or +inf logit that matters reaches: no
    extra pass over the logits and no host synchronization per step. Half-precision logits are
    upcast to float32 for the log-space math.
    """
    if tuple(logits.shape) != tuple(expected):
        raise ValueError(
            f"the network returned logits of shape {tuple(logits.shape)}, expected {tuple(expected)} "
            "(one logit per data category for every token)"
        )
    check = not torch.is_grad_enabled() and not checks_deferred() and logits.numel() > 0
    if check and not bool(logits.amax() < float("inf")):
        raise FloatingPointError("the network returned NaN or +inf logits")
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    return logits


def check_known_tokens(
    known: Tensor | None,
    known_mask: Tensor | None,
    shape: tuple[int, ...],
    vocab_size: int,
    device: torch.device,
) -> tuple[Tensor, Tensor] | None:
    """Validate an infilling pair (ids in [0, K) where known); return it on ``device``, 0 where unknown."""
    pair = check_known(known, known_mask, shape)
    if pair is None:
        return None
    values, mask = pair[0].to(device), pair[1].to(device)
    values = check_tokens(torch.where(mask, values, 0), num_ids=vocab_size, event_shape=None, what="known")
    return values, mask
