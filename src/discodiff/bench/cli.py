"""The ``bench`` subcommand's arguments (kept apart so that ``discodiff --help`` stays light)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser("bench", help="compare a suite's methods on one network, data set and budget")
    b.add_argument("suite", help="a suite name in configs/bench/ (toy2d, images, text, ...) or a YAML path")
    b.add_argument("--budget", type=float, help="training seconds per method (default: the suite's)")
    b.add_argument("--methods", help="comma-separated methods of the suite (default: all)")
    b.add_argument("--out", type=Path, help="a new results directory (default: bench_results/SUITE-TIME)")
    b.add_argument(
        "--set", dest="sets", action="append", default=[], metavar="key=value",
        help="override a suite key, e.g. --set quality.draws=1 (repeatable)",
    )  # fmt: skip


def command(args: argparse.Namespace) -> int:
    from .command import run_bench

    out = run_bench(args.suite, budget=args.budget, methods=args.methods, out=args.out, overrides=args.sets)
    print(f"bench: wrote {out / 'results.json'}, {out / 'leaderboard.md'} and plots")
    return 0
