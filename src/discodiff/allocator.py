"""glibc's malloc on the CPU: keep freed memory for the next training step instead of returning it.

Under glibc's defaults a block above the mmap threshold (128 KiB, raised as large blocks are
freed, up to 32 MiB) is a fresh ``mmap``, and free memory at the top of the heap beyond the trim
threshold (twice the mmap threshold) goes back to the kernel. Either way the next step's
activations land on pages the kernel must fault in and zero, one per 4 KiB. Whether a training
step's pattern of frees and allocations trips this depends on its history: the text transformer's
forward + backward (batch 32 x 256 tokens, width 256, depth 4, fp32) took 47,000 to 90,000 page
faults per step (0.16-0.28 s of system time) in one process and none in another
(benchmarks/network.py, ``--allocator``, measured both ways); a block above 32 MiB faults at
every allocation (tests/test_allocator.py).

:func:`keep_freed_memory` sets both thresholds to 2 GiB, the largest ``mallopt(3)`` takes
(``M_MMAP_THRESHOLD``, ``M_TRIM_THRESHOLD``): blocks below 2 GiB (a K = 50,257 logits tensor at
8,192 tokens is 1.65 GB) come from the heap and stay there once freed, so a step reuses the
previous step's pages once the heap has settled: torch's 64-byte-aligned requests
(``posix_memalign``) next to small live blocks fragment it at first, so it grows for a few steps
before reuse is fault-free (a 48 MB tensor: by round 2 to 6 in 100 fresh processes). Resident
memory stays at the run's peak instead of shrinking between steps; larger blocks are still mapped
afresh. The ``discodiff`` command calls it at start; ``DISCODIFF_MALLOC=default`` keeps glibc's defaults.
CUDA memory is PyTorch's own caching allocator and is not affected.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import platform

M_TRIM_THRESHOLD = -1  # from glibc's malloc.h
M_MMAP_THRESHOLD = -3
KEEP_BYTES = (1 << 31) - 1  # the largest value mallopt's int argument holds


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """glibc, loaded once, or ``None`` elsewhere."""
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    if hasattr(libc, "mallinfo2"):  # glibc >= 2.33
        libc.mallinfo2.restype = _MallInfo2
    return libc


def free_heap_bytes() -> int:
    """Bytes glibc holds free in its heap for reuse (``mallinfo2().fordblks``), 0 off glibc: memory
    this process can allocate again without the kernel, which ``MemAvailable`` does not count."""
    libc = _libc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        return 0
    return int(libc.mallinfo2().fordblks)


def keep_freed_memory(limit: int = KEEP_BYTES) -> bool:
    """Serve blocks up to ``limit`` bytes from glibc's heap and keep them once freed; ``False``
    (nothing changed) off glibc or when ``DISCODIFF_MALLOC=default``."""
    if not 0 < limit <= KEEP_BYTES:
        raise ValueError(f"limit must be in (0, {KEEP_BYTES}] bytes (mallopt takes an int), got {limit}")
    libc = _libc()
    if os.environ.get("DISCODIFF_MALLOC", "keep") == "default" or libc is None:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, limit)) and bool(libc.mallopt(M_TRIM_THRESHOLD, limit))
