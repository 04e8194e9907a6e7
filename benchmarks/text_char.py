"""The text benchmark is a suite of ``discodiff bench``: ``configs/bench/text.yaml``.

    python benchmarks/text_char.py [--budget SECONDS] [--methods a,b] [--out DIR] [--set key=value]

is the same as ``discodiff bench text ...`` (full run: ``--budget 600``); see
:mod:`discodiff.bench`.
"""

import sys

from discodiff.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "text", *sys.argv[1:]]))
