"""Write the README's leaderboards from committed ``discodiff bench`` results (never typed by hand).

    python benchmarks/readme_leaderboards.py DIR [DIR ...] [--readme README.md]

Each ``DIR`` is a results directory written by ``discodiff bench`` (``leaderboard.md`` beside its
``results.json``). The text between ``<!-- bench:begin -->`` and ``<!-- bench:end -->`` in the
README is replaced by each leaderboard (headings moved two levels down, the plots linked).
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def section(results: Path, readme: Path) -> str:
    board = (results / "leaderboard.md").read_text(encoding="utf-8")
    board = re.sub(r"^(#+) ", lambda m: "#" * (len(m.group(1)) + 2) + " ", board, flags=re.M)
    rel = Path(os.path.relpath(results.resolve(), readme.parent.resolve())).as_posix()
    return board.replace(
        "Plots: `likelihood_vs_time.png`, `quality_vs_time.png`; rows: `results.json`.",
        f"Plots: [likelihood vs time]({rel}/likelihood_vs_time.png), [quality vs sampling time]"
        f"({rel}/quality_vs_time.png); rows: [{rel}/results.json]({rel}/results.json).",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path)
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    args = parser.parse_args()
    text = args.readme.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{args.readme} has no {BEGIN} ... {END} block")
    body = "\n".join(section(r, args.readme) for r in args.results)
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    args.readme.write_text(f"{head}{BEGIN}\n{body}\n{END}{tail}", encoding="utf-8")
    print(f"wrote {len(args.results)} leaderboards into {args.readme}")


if __name__ == "__main__":
    main()
