"""Small tensor helpers shared by every process."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .errors import UsageError

LN2 = 0.6931471805599453
"""ln 2: nats per bit."""


def append_dims(c: Tensor, like: Tensor) -> Tensor:
    """Reshape a per-example ``(B,)`` coefficient to broadcast against ``like``; match its dtype."""
    return c.to(like.dtype).reshape(c.shape + (1,) * (like.dim() - c.dim()))


def sum_except_batch(x: Tensor) -> Tensor:
    """Sum over every dimension but the first: ``(B, ...) -> (B,)``."""
    return x.reshape(x.shape[0], -1).sum(dim=1)


def mean_except_batch(x: Tensor) -> Tensor:
    """Mean over every dimension but the first: ``(B, ...) -> (B,)``."""
    return x.reshape(x.shape[0], -1).mean(dim=1)


def log1mexp(x: Tensor) -> Tensor:
    r""":math:`\log(1 - e^{x})` for :math:`x \le 0`, accurate at both ends and safe to differentiate.

    :math:`\log(-\mathrm{expm1}(x))` for :math:`x > -\ln 2`, :math:`\mathrm{log1p}(-e^{x})` below
    (Mächler 2012, "Accurately computing log(1 - exp(-|a|))"). Each branch gets arguments where it
    is finite, so the masked branch's backward is never 0 * inf = NaN. ``-inf`` at ``x = 0``, ``0``
    at ``x = -inf``.
    """
    near = x > -math.log(2.0)
    x_near, x_far = torch.where(near, x, -1.0), torch.where(near, -1.0, x)
    return torch.where(near, torch.log(-torch.expm1(x_near)), torch.log1p(-torch.exp(x_far)))


def resolve_device(device: str) -> torch.device:
    """``"auto"`` picks CUDA when present, else CPU; anything else is passed to torch."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as err:
        raise UsageError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'") from err


def randn(
    shape: tuple[int, ...],
    *,
    generator: torch.Generator | None,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Standard normal draws from ``generator`` (on its own device), moved to ``device``."""
    if generator is None:
        return torch.randn(shape, device=device, dtype=dtype)
    return torch.randn(shape, generator=generator, device=generator.device, dtype=dtype).to(device)
