"""``discodiff export RUN_DIR OUT_DIR [--raw] [--force]``: write an inference bundle
(``model.safetensors``, ``config.json``, ``data.json``; see :mod:`discodiff.bundle`)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser(
        "export", help="write an inference bundle (safetensors + JSON) of a trained run", allow_abbrev=False
    )
    e.add_argument("run_dir", type=Path)
    e.add_argument("out_dir", type=Path)
    e.add_argument("--raw", action="store_true", help="the raw weights instead of their moving average")
    e.add_argument("--force", action="store_true", help="replace OUT_DIR if it is not empty")


def run(args: argparse.Namespace) -> int:
    from ..bundle import export

    out = export(args.run_dir, args.out_dir, ema=not args.raw, force=args.force)
    for path in sorted(out.iterdir()):
        print(path)
    return 0
