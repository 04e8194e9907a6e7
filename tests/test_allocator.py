"""The CLI's allocator setting: freed memory is reused, not faulted in again (discodiff.allocator)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")

PROBE = """
import resource, torch
from discodiff.allocator import keep_freed_memory
print(int(keep_freed_memory()))
for i in range(6):
    if i == 3:  # steady state: the first two rounds grow the heap
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.empty(12_000_000).fill_(1.0)  # 48 MB: above glibc's largest default mmap threshold
    del x
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 3)
"""


def faults_per_reallocation(malloc: str) -> tuple[bool, int]:
    env = os.environ | {"DISCODIFF_MALLOC": malloc, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    applied, faults = out.stdout.split()
    return applied == "1", int(faults)


def test_freed_memory_is_reused_without_page_faults():
    """A 48 MB tensor allocated, freed and allocated again: under glibc's defaults each one is a
    fresh mmap, 48 MB / 4 KiB = 11,719 faults; with keep_freed_memory the heap keeps it (measured:
    0). Fails if keep_freed_memory stops setting M_MMAP_THRESHOLD (checked: ~11,700 faults)."""
    applied, kept = faults_per_reallocation("keep")
    assert applied
    skipped, default = faults_per_reallocation("default")
    assert not skipped
    assert default > 10_000  # the probe does reach the behaviour the setting removes
    assert kept < 100
