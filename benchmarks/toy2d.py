"""The toy2d benchmark is a suite of ``discodiff bench``: ``configs/bench/toy2d.yaml``.

    python benchmarks/toy2d.py [--budget SECONDS] [--methods a,b] [--out DIR] [--set key=value]

is the same as ``discodiff bench toy2d ...`` (full run: ``--budget 180``); see
:mod:`discodiff.bench`.
"""

import sys

from discodiff.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "toy2d", *sys.argv[1:]]))
