"""Exponential moving average of a model's weights (Polyak averaging)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn


class EMA:
    r"""Shadow weights :math:`\bar\theta \leftarrow d\,\bar\theta + (1-d)\,\theta` after each step.

    The decay warms up as :math:`d_k = \min(d, (1+k)/(10+k))` at update k (as TensorFlow's
    ``ExponentialMovingAverage`` with ``num_updates``), so short runs are not dominated by the
    initial weights. Buffers are copied, not averaged.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.num_updates = 0
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        self.num_updates += 1
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                self.shadow[k].lerp_(v.detach(), 1 - d)
            else:
                self.shadow[k].copy_(v)

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[nn.Module]:
        """Temporarily load the EMA weights into ``model``."""
        backup = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.shadow)
        try:
            yield model
        finally:
            model.load_state_dict(backup)

    def state_tensors(self) -> dict[str, Tensor]:
        return {**self.shadow, "__num_updates": torch.tensor(self.num_updates)}

    def load_state_tensors(self, tensors: dict[str, Tensor]) -> None:
        self.num_updates = int(tensors["__num_updates"])
        for k in self.shadow:
            if k not in tensors:
                raise KeyError(f"EMA state lacks {k!r}")
            self.shadow[k].copy_(tensors[k])
