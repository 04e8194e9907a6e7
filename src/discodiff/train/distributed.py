"""Data-parallel training through ``torchrun`` (gloo on CPU, NCCL on CUDA).

Every rank draws the same global batch and the same per-example noise (identical seeds, see
:class:`~discodiff.base.Batch`) and keeps its rows, so N processes reproduce one process with
the same global batch up to floating-point summation order. Rank 0 logs and saves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def rows(self, global_batch: int) -> tuple[int, int]:
        """(offset, count) of this rank's rows in a global batch."""
        if global_batch % self.world_size:
            raise ConfigError(
                f"train.batch_size ({global_batch}) must be divisible by the number of processes "
                f"({self.world_size})"
            )
        per = global_batch // self.world_size
        return self.rank * per, per

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def any(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is true on any rank (so all ranks stop together)."""
        if self.world_size == 1:
            return flag
        t = torch.tensor([float(flag)])
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group when launched by ``torchrun`` (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size())


def shutdown_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
