"""``discodiff prepare CONFIG``: encode a data set's corpus once into memory-mapped token files.

::

    discodiff prepare CONFIG.yaml [--force] [--no-progress] [key=value ...]

The config's ``data`` section names the corpus and the directory to write (``data.prepared``);
``discodiff train`` on the same config then streams random windows from it. Running it again
verifies an existing directory (checksums) and keeps it; ``--force`` writes it again. The format
and its checks are in :mod:`discodiff.data.token_store`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .config import ConfigError
from .data.base import PREPARERS
from .runconfig import RunConfig, load_config


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="encode a text corpus once into memory-mapped token files")
    p.add_argument("config", type=Path, help="YAML run config whose data section sets data.prepared")
    p.add_argument("--force", action="store_true", help="write the directory again even if it exists")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. data.path=...")
    p.set_defaults(overrides=[])


def prepare(config: RunConfig, *, force: bool = False, progress: bool = True) -> dict:
    """Prepare the config's data set; returns the report of its preparer."""
    if config.data.name not in PREPARERS:
        allowed = ", ".join(PREPARERS.names())
        raise ConfigError(f"data.name: {config.data.name!r} has nothing to prepare; allowed: {allowed}")
    return PREPARERS.get(config.data.name)(config.data.config, force=force, progress=progress)


def format_report(report: dict) -> str:
    """A few lines: where, status, time, size, and per split tokens, documents, characters."""
    meta = report["meta"]
    lines = [
        f"prepared {report['directory']}: {report['status']} in {report['seconds']:.1f} s, "
        f"{report['bytes'] / 1e6:.2f} MB ({meta['dtype']} ids, vocabulary {meta['vocab_size']:,})"
    ]
    for split, entry in meta["splits"].items():
        per = entry["characters"] / entry["tokens"] if entry["tokens"] else 0.0
        lines.append(
            f"  {split}: {entry['tokens']:,} tokens, {entry['documents']:,} documents, "
            f"{entry['characters']:,} characters ({per:.3f} per token)"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """The ``prepare`` subcommand."""
    report = prepare(
        load_config(args.config, args.overrides), force=args.force, progress=not args.no_progress
    )
    print(format_report(report))
    return 0
