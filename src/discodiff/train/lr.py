"""Learning-rate schedule: linear warm-up, then cosine decay."""

from __future__ import annotations

import math


def lr_at(step: int, *, peak: float, warmup: int, total: int, min_ratio: float) -> float:
    """Learning rate for optimizer step ``step`` (0-based).

    1. ``step < warmup``: linear from ``peak / warmup`` to ``peak``;
    2. afterwards: cosine from ``peak`` down to ``peak * min_ratio`` at ``total``;
    3. beyond ``total``: ``peak * min_ratio``.
    """
    if step < warmup:
        return peak * (step + 1) / warmup
    if step >= total:
        return peak * min_ratio
    progress = (step - warmup) / max(total - warmup, 1)
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def sized_warmup(warmup: int, steps: int) -> int:
    """The warm-up of a run planned for ``steps``: a warm-up longer than a tenth of it is cut to a
    tenth (else a short budget ends before the learning rate reaches its peak)."""
    return min(warmup, max(steps // 10, 0))
