"""Shared pieces of the speed benchmarks: alternating timing in one process, peak memory, the
machine record and writing JSON + markdown under ``benchmarks/results/``.

Every timed comparison runs its sides in one process, one after the other within each repeat
(A, B, A, B, ...), after one untimed warm-up call of each, and reports medians and the median of
the per-repeat ratios, so that load from other processes hits both sides alike. ``--clock cpu``
times the process's CPU seconds instead of wall seconds: on a machine shared with other jobs
(and one torch thread) it leaves out the time the process waits for a core; the figures of
record are wall seconds on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = time.perf_counter


def add_options(parser: argparse.ArgumentParser) -> None:
    """``--threads`` and ``--clock``, shared by every benchmark."""
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--clock", choices=tuple(CLOCKS), default="wall", help="wall or process CPU seconds")


def apply_options(args: argparse.Namespace) -> None:
    global _clock
    if args.threads:
        torch.set_num_threads(args.threads)
    _clock = CLOCKS[args.clock]


def alternate(
    cases: dict[str, Callable[[], object]], repeats: int, *, warmup: int = 1
) -> dict[str, list[float]]:
    """Seconds per call of every case, ``repeats`` rounds, the cases in turn within each round.

    Round r starts at case r mod n (the order rotates): a case's place in a round biases its time
    (the whole-network pair in benchmarks/network.py measured 4-8% apart by place alone, through
    the cache and heap state the previous case leaves), and rotating spreads that over every case.
    """
    for _ in range(warmup):
        for fn in cases.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            start = _clock()
            cases[name]()
            times[name].append(_clock() - start)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def ratio(times: dict[str, list[float]], a: str, b: str) -> float:
    """Median over rounds of time(a) / time(b) (paired, so a slow round slows both)."""
    return statistics.median(x / y for x, y in zip(times[a], times[b], strict=True))


def peak_rss_growth(fn: Callable[[], object]) -> int:
    """Bytes by which the process's peak resident set grows while ``fn`` runs (Linux: the peak is
    reset through ``/proc/self/clear_refs`` before the call and read from ``VmHWM`` after)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status_kib("VmRSS")
    fn()
    return (_status_kib("VmHWM") - before) * 1024


def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{key} not in /proc/self/status")


def machine() -> dict:
    """What the figures were measured on (and which clock timed them)."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [
            line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if "model name" in line
        ]
        cpu = names[0] if names else cpu
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "clock": next(name for name, fn in CLOCKS.items() if fn is _clock),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "malloc_env": {k: v for k, v in os.environ.items() if k.startswith(("MALLOC_", "LD_PRELOAD"))},
    }


def commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "src"], capture_output=True, text=True, cwd=ROOT
        )
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


COMMIT = commit()


def meta(started: float) -> dict:
    """Machine, commit (read when this module was imported, i.e. of the code that ran), command and
    wall time of this run."""
    return {
        "machine": machine(),
        "commit": COMMIT,
        "command": "python " + " ".join(sys.argv),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }


def write(name: str, results: dict, markdown: str, *, json_path: Path | None = None) -> None:
    """``results`` as JSON (``json_path`` or ``benchmarks/results/NAME.json``) and ``markdown`` beside it."""
    json_path = json_path or RESULTS / f"{name}.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=1) + "\n")
    json_path.with_suffix(".md").write_text(markdown)
    print(markdown)


def meta_lines(info: dict) -> list[str]:
    m = info["machine"]
    return [
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['threads']} torch threads, torch {m['torch']}; "
        f"load average at start {m['load_average']}; {m['clock']} clock.",
        f"Commit {info['commit']}; `{info['command']}`; wall time {info['wall_seconds']} s.",
    ]
