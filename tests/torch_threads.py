"""Run small-network tests on one CPU thread.

Tiny convolutions gain nothing from a second thread, and two OpenMP threads on a busy two-core
machine wait for each other: measured on this project's CI machine while other processes ran, a
tiny U-Net's training test took 12 s on one thread and 70-290 s on two.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def single_thread() -> Iterator[None]:
    """Set torch's intra-op threads to 1 inside the block; restore the previous count after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
