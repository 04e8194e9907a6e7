"""Small tensor helpers shared by every process."""

from __future__ import annotations

import torch
from torch import Tensor

LN2 = 0.6931471805599453
"""ln 2: nats per bit."""


def format_bytes(n: float) -> str:
    """A byte count for people: ``1.2 GB`` (powers of 1000)."""
    for unit in ("B", "KB", "MB", "GB", "TB", "PB", "EB"):
        if abs(n) < 1000 or unit == "EB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def append_dims(c: Tensor, like: Tensor) -> Tensor:
    """Reshape a per-example ``(B,)`` coefficient to broadcast against ``like``; match its dtype."""
    return c.to(like.dtype).reshape(c.shape + (1,) * (like.dim() - c.dim()))


def sum_except_batch(x: Tensor) -> Tensor:
    """Sum over every dimension but the first: ``(B, ...) -> (B,)``."""
    return x.reshape(x.shape[0], -1).sum(dim=1)


def mean_except_batch(x: Tensor) -> Tensor:
    """Mean over every dimension but the first: ``(B, ...) -> (B,)``."""
    return x.reshape(x.shape[0], -1).mean(dim=1)


def resolve_device(device: str, what: str = "device") -> torch.device:
    """``"auto"`` picks CUDA when present, else CPU; ``cpu``, ``cuda``, ``cuda:N`` and ``mps`` are
    checked against the machine (``what`` names the setting in errors)."""
    from .errors import ConfigError

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    allowed = "allowed: 'auto', 'cpu', 'cuda', 'cuda:N', 'mps'"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"{what}: unknown device {device!r}; {allowed}") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"{what}: {device!r}, but this machine has no CUDA device; use 'auto' or 'cpu'")
        if dev.index is not None and dev.index >= count:
            raise ConfigError(
                f"{what}: {device!r}, but this machine has {count} CUDA device(s) (cuda:0..{count - 1})"
            )
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(f"{what}: 'mps', but MPS is not available here; use 'auto' or 'cpu'")
    elif dev.type != "cpu":
        raise ConfigError(f"{what}: unsupported device {device!r}; {allowed}")
    return dev


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
